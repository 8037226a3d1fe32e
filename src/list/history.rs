//! Where in its cluster's history this server is: its timeline and how far its WAL reaches.
//!
//! Transaction ids are counted along a history, not by a cluster: a standby promoted after it
//! fell behind, or a cluster recovered to a point in time, hands out again ids that its old
//! history had already handed out. A position (position.rs) therefore says where it was taken,
//! as a timeline and a WAL location, and is accepted only by a server whose history contains that
//! point: the same timeline, at or past it; or a later timeline that branched off after it.
//! PostgreSQL keeps each timeline's ancestry in its history file (`pg_wal/<tli>.history`).

use std::cell::RefCell;

use pgrx::pg_sys;

/// A point in a cluster's history: a timeline and a WAL location on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub timeline: u32,
    pub lsn: u64,
}

/// How a point relates to this server's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The server's history contains it.
    Contains,
    /// Not yet: a standby that has not replayed that far (or not yet followed that timeline).
    Behind,
    /// Never: another branch of the history, or a point this server's history lost.
    Elsewhere,
}

/// This server's point now. On a primary, the end of its last WAL record, made durable first: a
/// position handed out must not name a transaction whose end a crash could still lose (after
/// it, the id would be handed out again). On a standby, how far it has replayed.
pub fn here(flushed: bool) -> Point {
    // SAFETY: reads of shared WAL state; XLogFlush writes and syncs WAL up to a location that
    // was already inserted.
    unsafe {
        if pg_sys::RecoveryInProgress() {
            let mut timeline: pg_sys::TimeLineID = 0;
            let lsn = pg_sys::GetXLogReplayRecPtr(&mut timeline);
            Point { timeline, lsn }
        } else {
            let lsn = last_record_end(pg_sys::GetXLogInsertRecPtr(), pg_sys::wal_segment_size as u64);
            if flushed {
                pg_sys::XLogFlush(lsn);
            }
            Point { timeline: pg_sys::GetWALInsertionTimeLine(), lsn }
        }
    }
}

/// Where the last record inserted before `insert` (the insert location, in a WAL of segments of
/// `segment_size` bytes) ends: at a page's start the location is past the page header, which is
/// not written until the next record is, and a flush request past what is written is an ERROR.
/// Only there: a record that ran on from the page before ends a few bytes past the header, and a
/// standby that replayed it reports that end, which must not be ahead of this server's.
fn last_record_end(insert: u64, segment_size: u64) -> u64 {
    // A page's header: 24 bytes, 40 on a segment's first page (SizeOfXLogShortPHD, ...LongPHD).
    let header = if insert % segment_size < u64::from(pg_sys::XLOG_BLCKSZ) { 40 } else { 24 };
    let offset = insert % u64::from(pg_sys::XLOG_BLCKSZ);
    if offset <= header {
        insert - offset
    } else {
        insert
    }
}

/// This server's timeline (the one it writes, or replays on a standby). The stamp trigger asks
/// for every row it stamps: on a primary it does not read the WAL's insert location, whose
/// spinlock every WAL insert of the server takes.
pub fn timeline() -> u32 {
    // SAFETY: reads of shared WAL state.
    unsafe {
        if pg_sys::RecoveryInProgress() {
            here(false).timeline
        } else {
            pg_sys::GetWALInsertionTimeLine()
        }
    }
}

/// Whether `point` is in this server's history, now at `now`.
pub fn reach(point: Point, now: Point, in_recovery: bool) -> Reach {
    if point.timeline == now.timeline {
        // A standby that has not replayed as far has the same history, only less of it: whether
        // its snapshot has seen what the position saw is for the position's horizons to say
        // (position.rs); WAL written since for other reasons does not matter. A primary's WAL
        // ends before the point only if it lost some (restored from a file-system snapshot).
        return if point.lsn <= now.lsn || in_recovery { Reach::Contains } else { Reach::Elsewhere };
    }
    match switch_point(now.timeline, point.timeline) {
        Some(end) if point.lsn <= end => Reach::Contains,
        Some(_) => Reach::Elsewhere,
        // A later timeline this standby has not followed yet.
        None if in_recovery && point.timeline > now.timeline => Reach::Behind,
        None => Reach::Elsewhere,
    }
}

#[repr(C)]
struct TimeLineHistoryEntry {
    tli: pg_sys::TimeLineID,
    begin: pg_sys::XLogRecPtr,
    end: pg_sys::XLogRecPtr,
}

unsafe extern "C-unwind" {
    /// timeline.h: the ancestry of a timeline, newest first, read from its history file. Not in
    /// pgrx's bindings; called through pg_guard_ffi_boundary, since it may raise an ERROR.
    fn readTimeLineHistory(target: pg_sys::TimeLineID) -> *mut pg_sys::List;
}

/// A timeline and its ancestors, each with where the history left it.
type Ancestry = (u32, Vec<(u32, u64)>);

thread_local! {
    /// Per backend: a timeline's ancestry never changes once the timeline exists.
    static ANCESTRY: RefCell<Option<Ancestry>> = const { RefCell::new(None) };
}

/// Where the history of `timeline` left its ancestor `ancestor` (None: not an ancestor).
fn switch_point(timeline: u32, ancestor: u32) -> Option<u64> {
    ANCESTRY.with_borrow_mut(|known| {
        if known.as_ref().is_none_or(|(of, _)| *of != timeline) {
            *known = Some((timeline, ancestry(timeline)));
        }
        let (_, entries) = known.as_ref().expect("just read");
        entries.iter().find(|(tli, _)| *tli == ancestor).map(|&(_, end)| end)
    })
}

/// The ancestors of `timeline`, with where each ended.
fn ancestry(timeline: u32) -> Vec<(u32, u64)> {
    // SAFETY: readTimeLineHistory returns a palloc'd list of palloc'd entries (the current
    // timeline's with end InvalidXLogRecPtr); errors (an unreadable file) are raised as ERRORs.
    unsafe {
        let list = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| readTimeLineHistory(timeline));
        let length = if list.is_null() { 0 } else { (*list).length as usize };
        let entries = (0..length)
            .map(|i| {
                let entry = &*((*(*list).elements.add(i)).ptr_value as *const TimeLineHistoryEntry);
                (entry.tli, entry.end)
            })
            .filter(|&(tli, _)| tli != timeline)
            .collect();
        pg_sys::list_free_deep(list);
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::last_record_end;

    const SEGMENT: u64 = 16 * 1024 * 1024;

    #[test]
    fn a_flush_stops_before_a_page_header_not_yet_written() {
        assert_eq!(last_record_end(0x1E9E018, SEGMENT), 0x1E9E000); // past a short header
        assert_eq!(last_record_end(0x2000028, SEGMENT), 0x2000000); // past a segment's long header
        assert_eq!(last_record_end(0x1E9E0A8, SEGMENT), 0x1E9E0A8); // after a record
    }

    #[test]
    fn a_record_that_ran_on_from_the_page_before_ends_where_it_ends() {
        // 8 bytes past a short header: the end a standby reports after replaying it (the
        // position it hands out); taken back to the page's start, a primary refused it as
        // another history (72000, the replica sync race).
        assert_eq!(last_record_end(0x1E9E020, SEGMENT), 0x1E9E020);
        assert_eq!(last_record_end(0x1E9E028, SEGMENT), 0x1E9E028);
        // Other segment sizes (initdb --wal-segsize): a segment's first page by that size.
        assert_eq!(last_record_end(0x4000028, 64 * 1024 * 1024), 0x4000000);
        assert_eq!(last_record_end(0x1000028, 64 * 1024 * 1024), 0x1000028);
    }
}
