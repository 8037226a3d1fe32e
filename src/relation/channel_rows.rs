//! The channel rows one call reads one after another with the statement's snapshot (a list, a
//! badge or a sync reads every large channel of its user): the channel table's key probed by one
//! scan, and each row looked for first where this backend last found it.
//!
//! A descent of the key costs more than a fetch from one heap page, and a user's list reads the
//! same channels on every call: so the TID of each row's index entry (the root of its HOT chain,
//! from which a fetch follows the chain to the version the snapshot sees, as an index scan does)
//! is remembered per backend. It is a hint, never trusted: no fetch past the table's end; the
//! row fetched must be visible and of the same channel; else the key is descended and the TID
//! remembered anew (a row updated off its page, deleted, or made again). Forgotten with every
//! invalidation of the table (rewritten, truncated, altered) and when it holds too many.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use pgrx::pg_sys;

use crate::glue::call::varlena_bytes;
use crate::glue::invalidation;
use crate::relation::channel_table::ChannelTable;
use crate::relation::large::Channel;
use crate::relation::probe::{slot_value, IndexProbe, Snapshot};

/// The most channels a backend remembers (16 bytes each, and the map's own).
const MAX_REMEMBERED: usize = 8192;

/// Where the channel table's rows were found, by a hash of their key: a collision is a miss.
struct Remembered {
    relid: pg_sys::Oid,
    tids: HashMap<u64, pg_sys::ItemPointerData>,
}

thread_local! {
    static REMEMBERED: RefCell<Remembered> = RefCell::new(Remembered { relid: pg_sys::InvalidOid, tids: HashMap::new() });
}

/// The channel table open for one call's reads, with the statement's snapshot. Dropped before
/// the end of the call (its scan and slot are freed; the table's lock stays).
pub struct ChannelRows {
    probe: IndexProbe,
    table: ChannelTable,
    fetch: *mut pg_sys::IndexFetchTableData,
    slot: *mut pg_sys::TupleTableSlot,
    /// The table's length when opened: a remembered TID past it is not fetched (VACUUM may have
    /// cut the table's end since; it cannot while the table is open).
    blocks: pg_sys::BlockNumber,
}

impl ChannelRows {
    pub fn open(schema: pg_sys::Oid) -> ChannelRows {
        let table = ChannelTable::open(schema);
        let probe = table.probe(Snapshot::Statement);
        let relation = table.relation();
        // SAFETY: the open, locked table; the fetch and slot are freed on drop.
        let (fetch, slot, blocks) = unsafe {
            (
                pg_sys::table_index_fetch_begin(relation),
                pg_sys::table_slot_create(relation, std::ptr::null_mut()),
                pg_sys::RelationGetNumberOfBlocksInFork(relation, pg_sys::ForkNumber::MAIN_FORKNUM),
            )
        };
        ChannelRows { probe, table, fetch, slot, blocks }
    }

    /// The channel row of (channel_id, channel_type) as the statement's snapshot sees it, or None.
    pub fn channel(&mut self, channel_id: &[u8], channel_type: i16) -> Option<Channel> {
        let key = hash_of(channel_id, channel_type);
        let relid = self.table.relid();
        if let Some(channel) = self.at_remembered(relid, key, channel_id, channel_type) {
            return Some(channel);
        }
        let (slot, root) = self.probe.channel(channel_id, channel_type)?;
        remember(relid, key, root);
        // SAFETY: the probe's slot, holding a visible row of the table.
        Some(unsafe { self.table.values(slot) })
    }

    /// The row at the TID remembered for `key`, if it is there, visible, and of this channel.
    fn at_remembered(&mut self, relid: pg_sys::Oid, key: u64, channel_id: &[u8], channel_type: i16) -> Option<Channel> {
        let mut tid = REMEMBERED.with_borrow(|remembered| (remembered.relid == relid).then(|| remembered.tids.get(&key).copied()))??;
        let block = (u32::from(tid.ip_blkid.bi_hi) << 16) | u32::from(tid.ip_blkid.bi_lo);
        if block >= self.blocks {
            return None;
        }
        // SAFETY: a fetch of a block within the table (an offset past the page's lines or at an
        // unused one finds nothing), with the statement's snapshot, the one the probe reads with;
        // the slot's row is read before the next fetch.
        unsafe {
            let (mut again, mut all_dead) = (false, false);
            let snapshot = pg_sys::GetActiveSnapshot();
            if !pg_sys::table_index_fetch_tuple(self.fetch, &mut tid, snapshot, self.slot, &mut again, &mut all_dead) {
                return None;
            }
            let [id_column, type_column] = self.table.key_columns();
            let same = match (slot_value(self.slot, i32::from(id_column)), slot_value(self.slot, i32::from(type_column))) {
                (Some(id), Some(kind)) => kind.value() as i16 == channel_type && varlena_bytes(id) == channel_id,
                _ => false,
            };
            same.then(|| self.table.values(self.slot))
        }
    }
}

impl Drop for ChannelRows {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called; the abort releases it all.
        if std::thread::panicking() {
            return;
        }
        // SAFETY: made by `open`, freed once; the probe and the table close after (field order).
        unsafe {
            pg_sys::table_index_fetch_end(self.fetch);
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
        }
    }
}

fn hash_of(channel_id: &[u8], channel_type: i16) -> u64 {
    let mut hasher = DefaultHasher::new();
    (channel_id, channel_type).hash(&mut hasher);
    hasher.finish()
}

fn remember(relid: pg_sys::Oid, key: u64, root: pg_sys::ItemPointerData) {
    REMEMBERED.with_borrow_mut(|remembered| {
        if remembered.relid != relid || remembered.tids.len() >= MAX_REMEMBERED {
            if remembered.relid == pg_sys::InvalidOid {
                invalidation::on_relation_change(forget);
            }
            remembered.relid = relid;
            remembered.tids.clear();
        }
        remembered.tids.insert(key, root);
    });
}

/// # Safety
/// Called by PostgreSQL as a relcache invalidation callback.
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    REMEMBERED.with_borrow_mut(|remembered| {
        if relid == pg_sys::InvalidOid || relid == remembered.relid {
            remembered.tids.clear();
        }
    });
}
