//! Finding the row of a key, and `find_conversation(uid, channel_id, channel_type)`: the lookup
//! that never writes.
//!
//! Where catalog.rs places the key in a relation it can probe, one index probe finds the row (the
//! hit path: no SPI, no planner). Where it cannot (a table partitioned other than by hash), a kept
//! SELECT lets PostgreSQL find it. Either way the row comes back as the caller's declared type.
//!
//! find_conversation is STABLE: it reads with the calling statement's snapshot, takes no lock
//! beyond a SELECT's, draws no transaction id and writes nothing, so it runs in READ ONLY
//! transactions and on hot standbys, where a server routing reads to a replica sends it. It
//! returns NULL when the conversation does not exist.

use pgrx::pg_sys;

use crate::glue::call::sql_function;
use crate::input::key::ConversationKey;
use crate::relation::catalog::OpenTable;
use crate::relation::placement::Placement;
use crate::relation::probe::{IndexProbe, Snapshot};
use crate::relation::result_row::ResultRow;
use crate::relation::statements::{connect, key_args, prepared, returned_row, Statement};

const KEY_PARAMETERS: &[pg_sys::Oid] = &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT2OID];

const LOOKUP: &str = "SELECT {columns} FROM {table} AS c WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = $3";

const LOOKUP_FRESH: Statement = Statement { sql: LOOKUP, parameters: KEY_PARAMETERS, snapshot: Snapshot::Fresh };
const LOOKUP_IN_STATEMENT: Statement = Statement { sql: LOOKUP, parameters: KEY_PARAMETERS, snapshot: Snapshot::Statement };

sql_function! {
    /// find_conversation(uid, channel_id, channel_type) RETURNS conversation_row, STABLE. Not
    /// STRICT: a NULL argument is an error (22004), as for every function; NULL means "none".
    fn find_conversation(call) {
        let key = call.key(0);
        let table = OpenTable::for_call(call);
        let result = ResultRow::of_call(call, table.table.schema, Snapshot::Statement);
        let found = find(&table, &key, Snapshot::Statement, &result);
        found.unwrap_or_else(|| call.return_null())
    }
}

/// The row of `key` as the call's result datum, or None.
pub fn find(table: &OpenTable, key: &ConversationKey<'_>, snapshot: Snapshot, result: &ResultRow) -> Option<pg_sys::Datum> {
    // Dropped after the probe: a partition or shard it opened is closed then.
    let placement = table.placement(key);
    match placement {
        Placement::Direct { heap, index, .. } => {
            let mut probe = IndexProbe::open(heap, index, 3, snapshot);
            probe.key(&table.table, key).map(|slot| result.of_slot(slot))
        }
        Placement::Query => connect(|statements| {
            let statement = if snapshot == Snapshot::Fresh { &LOOKUP_FRESH } else { &LOOKUP_IN_STATEMENT };
            let prepared = prepared(statements, &table.table.names, statement);
            returned_row(statements, &prepared, &key_args(key), result)
        }),
    }
}
