//! The one way a SQL function reaches the table. Each step a call takes before it reads or writes
//! a row is taken here or enforced by a type, so a new function cannot skip one:
//!
//! - its arguments are checked first, by `Call` (`call.key`, `call.id_text`, ...), before this;
//! - `OpenTable::for_call`: the extension's schema (the called function's), the table locked,
//!   checked and its privileges tested (catalog.rs); `OpenTable::for_writes` also refuses a READ
//!   ONLY transaction or a hot standby before any lock of a key or write;
//! - statements run only under `statements::connect`, which connects SPI and pins search_path;
//! - the table, a partition or shard a placement opened, an index probe, the pinned path and SPI
//!   are released when they are dropped, or by the abort after an ERROR.
//!
//! A function that creates only on a miss (get-or-create, batches) opens with `for_call` and
//! refuses a read-only transaction itself when it finds it must write
//! (`refuse_writes_if_read_only`): a hit is served on a standby.

use crate::glue::call::{refuse_writes_if_read_only, Call};
use crate::relation::catalog::OpenTable;

impl OpenTable {
    /// The table of the called function's extension, open for this call.
    pub fn for_call(call: &Call) -> OpenTable {
        OpenTable::open(call.schema())
    }

    /// As `for_call`, for a function that writes (named `function` in the error): a READ ONLY
    /// transaction or a hot standby is refused (25006) once the table is open.
    pub fn for_writes(call: &Call, function: &str) -> OpenTable {
        let table = OpenTable::for_call(call);
        refuse_writes_if_read_only(function);
        table
    }
}
