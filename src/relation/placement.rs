//! Which relation holds a key's row: the table itself, the hash partition the key routes to
//! (PostgreSQL's own partition hashing), the Citus shard of the key when this node has it
//! (Citus's own functions, citus.rs), or, when none can be probed directly, `Placement::Query`:
//! a SQL statement lets PostgreSQL (or Citus) find it.

use pgrx::pg_sys;

use crate::glue::call::text_datum;
use crate::input::key::ConversationKey;
use crate::relation::catalog::OpenTable;
use crate::relation::citus;
use crate::relation::table::{primary_key, HashRouting, KeyField, Layout};

/// Where the row of a key lives.
pub enum Placement {
    /// In `heap`, under its key index `index`: probe it directly. `leaf` when it is a partition
    /// opened for this probe (closed when the placement is dropped).
    Direct { heap: pg_sys::Relation, index: pg_sys::Oid, leaf: bool },
    /// Only SQL can find it.
    Query,
}

impl Drop for Placement {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called; the abort that follows
        // releases the relation with the resource owner.
        if let (Placement::Direct { heap, leaf: true, .. }, false) = (&*self, std::thread::panicking()) {
            // SAFETY: opened by `placement`; the lock stays to the end of the transaction.
            unsafe { pg_sys::table_close(*heap, pg_sys::NoLock as _) };
        }
    }
}

impl OpenTable {
    /// Where the row of `key` lives (a partition or shard it opens is closed when the placement
    /// is dropped).
    pub fn placement(&self, key: &ConversationKey<'_>) -> Placement {
        match &self.table.layout {
            Layout::Plain => Placement::Direct { heap: self.relation, index: self.table.key_index, leaf: false },
            Layout::Queried => Placement::Query,
            // SAFETY: the partitioned table is open and locked.
            Layout::HashPartitioned(routing) => unsafe { self.hash_partition_of(routing, key) },
            Layout::Distributed => match citus::local_shard(self.table.relid, self.table.schema, text_datum(key.uid)) {
                // SAFETY: the shard exists on this node; locked as the table is.
                Some(shard) => unsafe { direct(shard) },
                None => Placement::Query,
            },
        }
    }

    /// The relation that holds the rows of `uid` when a statement run here reads them in this
    /// node's own transaction: the table on one server; on Citus, the uid's shard, only on the
    /// node that holds it (None elsewhere).
    pub fn relation_holding(&self, uid: &[u8]) -> Option<pg_sys::Oid> {
        match &self.table.layout {
            Layout::Distributed => citus::local_shard(self.table.relid, self.table.schema, text_datum(uid)),
            _ => (!self.table.distributed).then_some(self.table.relid),
        }
    }

    /// The leaf partition PostgreSQL would route `key` to, as ExecFindPartition does for hash
    /// partitioning: the partition key's hash, modulo the greatest modulus, indexes the bound.
    ///
    /// # Safety
    /// `self.relation` is the open, locked partitioned table that `routing` was read from.
    unsafe fn hash_partition_of(&self, routing: &HashRouting, key: &ConversationKey<'_>) -> Placement {
        let partitions = pg_sys::RelationGetPartitionDesc(self.relation, true);
        if partitions.is_null() || (*partitions).nparts == 0 {
            return Placement::Query;
        }
        let bound = (*partitions).boundinfo;
        let mut values: Vec<pg_sys::Datum> = routing
            .fields
            .iter()
            .map(|field| match field {
                KeyField::Uid => text_datum(key.uid),
                KeyField::ChannelId => text_datum(key.channel_id),
                KeyField::ChannelType => self.table.channel_type_datum(key.channel_type),
            })
            .collect();
        let mut nulls = vec![false; values.len()];
        let hash = pg_sys::compute_partition_hash_value(
            values.len() as i32,
            routing.functions.as_ptr().cast_mut(),
            routing.collations.as_ptr().cast_mut(),
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        let modulus = (*bound).nindexes as u64;
        let part = *(*bound).indexes.add((hash % modulus) as usize);
        // No partition for this remainder (the INSERT will say so), or one partitioned again.
        if part < 0 || !*(*partitions).is_leaf.add(part as usize) {
            return Placement::Query;
        }
        direct(*(*partitions).oids.add(part as usize))
    }
}

/// A placement in the relation `relid` (a partition or a shard), opened and locked (AccessShareLock,
/// as the executor locks the partitions it reads), probed through its own primary key.
///
/// # Safety
/// `relid` is a relation that exists (a partition or shard of the table, found under its lock).
unsafe fn direct(relid: pg_sys::Oid) -> Placement {
    let leaf = pg_sys::table_open(relid, pg_sys::AccessShareLock as _);
    let index = primary_key(leaf);
    if index == pg_sys::InvalidOid {
        pg_sys::table_close(leaf, pg_sys::NoLock as _);
        return Placement::Query;
    }
    Placement::Direct { heap: leaf, index, leaf: true }
}
