//! The conversation table, as this backend knows it. Every other module asks here; nothing else
//! looks the table up by name.
//!
//! - Found by name in the extension's schema *under a lock*: the table is locked first
//!   (AccessShareLock, as any SELECT), and only then are its primary key and partitions read from
//!   the relcache (table.rs reads and checks them). Taking the lock processes pending
//!   invalidations, so what we then read is current: a REINDEX CONCURRENTLY or a re-created
//!   primary key that committed before the lock is seen, and one that has not cannot drop an
//!   index under us (it waits for our lock).
//! - Remembered per backend until a relcache invalidation of the table or its indexes, or a change
//!   of any schema (a rename changes the name our statements use), forgets it. A remembered entry
//!   is used only after the table is locked again, so a forgotten OID is never trusted.
//! - Where a key's row lives is placement.rs's; whether its rows are stamped, stamp_catalog.rs's.

use std::cell::Cell;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;

use crate::glue::errors;
use crate::glue::guard::{c, guarded};
use crate::glue::invalidation;
use crate::relation::channel_table;
use crate::relation::stamp_catalog::{self, Stamped};
use crate::relation::table::Table;

thread_local! {
    /// One entry: a database holds the extension once.
    static KNOWN: Cell<Option<Rc<Table>>> = const { Cell::new(None) };
}

fn known() -> Option<Rc<Table>> {
    KNOWN.with(|known| {
        let table = known.take();
        known.set(table.clone());
        table
    })
}

fn forget_if(depends: impl Fn(&Table) -> bool) {
    KNOWN.with(|known| {
        let table = known.take();
        if let Some(table) = table {
            if !depends(&table) {
                known.set(Some(table));
            }
        }
    });
}

/// Relcache invalidation: the table, or one of the indexes we use, changed (or every cache was
/// reset).
///
/// # Safety
/// Called by PostgreSQL as a relcache invalidation callback (registered in `OpenTable::open`).
unsafe extern "C-unwind" fn forget_relation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    forget_if(|table| {
        relid == pg_sys::InvalidOid
            || relid == table.relid
            || relid == table.key_index
            || table.channel_index == Some(relid)
            || table
                .list_indexes
                .as_ref()
                .is_some_and(|list| [list.unread, list.read, list.hidden].contains(&relid) || list.large == Some(relid))
            || table.channels == Some(relid)
            || table.leaves.binary_search(&relid.to_u32()).is_ok()
    });
}

/// A schema changed (renamed, say): the qualified name we remember may be stale.
///
/// # Safety
/// Called by PostgreSQL as a syscache invalidation callback (registered in `OpenTable::open`).
unsafe extern "C-unwind" fn forget_on_schema_change(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    forget_if(|_| true);
}

/// The table, locked and open for this call, its privileges checked; closed when dropped (the
/// lock stays to the end of the transaction).
pub struct OpenTable {
    pub table: Rc<Table>,
    pub relation: pg_sys::Relation,
}

impl OpenTable {
    /// Locks the conversation table of `schema` (AccessShareLock, to the end of the transaction)
    /// and checks that the caller may read it: SELECT privilege, and no row level security policy
    /// in force (the functions refuse rather than bypass one).
    pub(in crate::relation) fn open(schema: pg_sys::Oid) -> OpenTable {
        if let Some(table) = known().filter(|table| table.schema == schema) {
            let relid = table.relid;
            // SAFETY: locks by OID first (NULL if the relation is gone), then tests the caller's
            // privilege on it, under one guard (the hit path).
            let (relation, privilege) = unsafe {
                guarded(|| {
                    let relation = c::try_table_open(relid, pg_sys::AccessShareLock as _);
                    (relation, (!relation.is_null()).then(|| select_privilege(relid)))
                })
            };
            if let Some(privilege) = privilege {
                // The lock processed pending invalidations: the entry is current if still known.
                if known().is_some_and(|now| Rc::ptr_eq(&now, &table)) {
                    return OpenTable::checked(table, relation, privilege);
                }
                // SAFETY: opened above; the lock stays, harmlessly, to the end of the transaction.
                unsafe { pg_sys::table_close(relation, pg_sys::NoLock as _) };
            }
        }
        // Before anything is read that the entry remembers: an invalidation from then on clears it.
        invalidation::on_relation_change(forget_relation);
        invalidation::on_syscache_change(pg_sys::SysCacheIdentifier::NAMESPACEOID, forget_on_schema_change);
        let relation = lock_by_name(schema);
        // SAFETY: `relation` is open and locked.
        let table = Rc::new(unsafe { Table::inspect(schema, relation) });
        KNOWN.with(|known| known.set(Some(table.clone())));
        let relid = table.relid;
        // SAFETY: a privilege test on the open relation, under one guard.
        let privilege = unsafe { guarded(|| select_privilege(relid)) };
        OpenTable::checked(table, relation, privilege)
    }

    /// Refuses the call unless the caller may read the table: `privilege` (its SELECT privilege,
    /// tested once the table was locked) and no row level security in force.
    fn checked(table: Rc<Table>, relation: pg_sys::Relation, privilege: pg_sys::AclResult::Type) -> OpenTable {
        // SAFETY: catalog checks on the open relation.
        unsafe {
            if privilege != pg_sys::AclResult::ACLCHECK_OK {
                pg_sys::aclcheck_error(privilege, pg_sys::ObjectType::OBJECT_TABLE, c"conversation".as_ptr());
            }
            if (*(*relation).rd_rel).relrowsecurity
                && pg_sys::check_enable_rls(table.relid, pg_sys::InvalidOid, false) == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
            {
                errors::row_security_unsupported();
            }
        }
        OpenTable { table, relation }
    }

    /// Whether the rows of `relid` (the table, or a Citus shard of it) are stamped, and since
    /// which transaction (`stamp_catalog::stamped_since`; the latest of its partitions').
    pub fn stamped_since(&self, relid: pg_sys::Oid) -> Option<Stamped> {
        #[cfg(any(test, feature = "pg_test"))]
        if stamp_catalog::for_tests::STAMP_TRIGGER_FROZEN.get() {
            return self.stamped_since_as_found(relid).map(|stamped| Stamped { since: 0, ..stamped });
        }
        self.stamped_since_as_found(relid)
    }

    fn stamped_since_as_found(&self, relid: pg_sys::Oid) -> Option<Stamped> {
        if relid != self.table.relid {
            // A Citus shard, and this node's placement of the channel table.
            return self.with_channels(stamp_catalog::stamped_since(relid, self.table.schema, false));
        }
        if let Some(stamped) = self.table.stamped.get() {
            return stamped;
        }
        // A partitioned table's rows live in its leaves, each with a trigger of its own.
        // The table's truncation is recorded by its own trigger (a partition truncated alone is
        // not: docs/changing-the-table.md).
        let table = stamp_catalog::stamped_since(relid, self.table.schema, true);
        let stamped = if self.table.leaves.is_empty() {
            table
        } else {
            // Every leaf stamped as the table is: a leaf whose trigger does not record deletes
            // would lose its departures.
            self.table.leaves.iter().try_fold(table?, |latest, &leaf| {
                stamp_catalog::stamped_since(pg_sys::Oid::from_u32(leaf), self.table.schema, false)
                    .filter(|stamped| stamped.departures == latest.departures)
                    .map(|stamped| Stamped { since: stamped.since.max(latest.since), departures: latest.departures })
            })
        };
        let stamped = self.with_channels(stamped);
        self.table.stamped.set(Some(stamped));
        stamped
    }

    /// `stamped` and the channel table's stamps. Its rows date the large memberships
    /// (relation/large.rs): stamped as the table's, or the list refuses positions as for any row
    /// it could miss. (Stamped since it was made, as an update or Citus makes it, it holds nothing
    /// a position could lack.) On Citus, this node's placement of it, which this node stamps.
    fn with_channels(&self, stamped: Option<Stamped>) -> Option<Stamped> {
        if self.table.channels.is_none() {
            return stamped;
        }
        let stamped = stamped?;
        let channels = channel_table::rows_relid_in(self.table.schema)?;
        let channel = stamp_catalog::stamped_since(channels, self.table.schema, false)?;
        let since = if stamp_catalog::stamped_from_the_start(channels, self.table.schema) { 0 } else { channel.since };
        Some(Stamped { since: stamped.since.max(since), departures: stamped.departures })
    }
}

impl Drop for OpenTable {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called; the abort that follows
        // releases the relation with the resource owner.
        if !std::thread::panicking() {
            // SAFETY: opened by `open`; the lock stays to the end of the transaction.
            unsafe { pg_sys::table_close(self.relation, pg_sys::NoLock as _) };
        }
    }
}

/// The caller's SELECT privilege on `relid`.
///
/// # Safety
/// Inside `guarded`.
unsafe fn select_privilege(relid: pg_sys::Oid) -> pg_sys::AclResult::Type {
    c::pg_class_aclcheck(relid, c::GetUserId(), pg_sys::ACL_SELECT as _)
}

/// Finds the table by name in `schema`, locking it before the name is trusted (PostgreSQL's
/// RangeVarGetRelidExtended retries if the name moved to another relation while it waited).
fn lock_by_name(schema: pg_sys::Oid) -> pg_sys::Relation {
    // SAFETY: catalog lookups; the RangeVar and names are palloc'd in the call's context.
    unsafe {
        let schema_name = pg_sys::get_namespace_name(schema);
        if schema_name.is_null() {
            errors::extension_dropped();
        }
        let range = pg_sys::makeRangeVar(schema_name, pg_sys::pstrdup(c"conversation".as_ptr()), -1);
        let relid = pg_sys::RangeVarGetRelidExtended(
            range,
            pg_sys::AccessShareLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if relid == pg_sys::InvalidOid {
            errors::table_missing(&CStr::from_ptr(schema_name).to_string_lossy());
        }
        pg_sys::table_open(relid, pg_sys::NoLock as _)
    }
}
