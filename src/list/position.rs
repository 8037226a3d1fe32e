//! Positions in a conversation list (list.rs): the text a client stores and passes back.
//!
//! A position is made of snapshots. Every change is stamped with its transaction's id
//! (stamp.rs), so "what changed since" a snapshot is exactly the rows whose version that snapshot
//! did not see: a transaction id at or above its xmax, or one of its in-progress ids. A writer
//! that commits after a later writer was read is still "not seen" by the snapshot the client was
//! given, so nothing is lost however writers commit, and nothing needs waiting for.
//!
//! A list is read in passes: a pass starts at a snapshot (its horizon) and returns, newest first,
//! what changed since the last pass's horizon (everything, for the first), page by page. Each row
//! comes with the position after it: mid-pass, the pass's horizon and the row (the cursor); after
//! a pass's last row, the pass's horizon as the new "since". Rows that change during a pass move
//! above its cursor; the next pass returns them, since the pass's horizon did not see them.
//!
//! Text form, opaque to clients:
//! `2/<type or *>/<system id>:<database>/<timeline>:<lsn>/<since>/<pass>/<cursor>`, a horizon as
//! `generation:xmin:xmax:xid,xid,...` (full transaction ids, like pg_snapshot, and the
//! generation they are stamped in: stamp.rs), a cursor as `version:updated_at:id`, and `-` for
//! none. The system id and the point in the cluster's history where it was handed out
//! (history.rs) say which transaction ids the horizons count: a position is continued only where
//! that history goes on. Each horizon has its generation: one taken before a promotion is
//! continued after it, where rows are stamped in the next generation.

use pgrx::pg_sys;

use crate::list::history::Point;
use crate::list::version;
use crate::relation::xid;

/// The longest position accepted: a horizon lists the transactions in progress, a few per
/// connection.
pub const MAX_POSITION_BYTES: usize = 1 << 20;
/// The most in-flight ids a horizon is written with (a busy primary has tens; a standby lists
/// subtransactions too). Beyond it the horizon is written coarser (`Horizon::write`).
const MAX_WRITTEN_IN_FLIGHT: usize = 1000;
const FORMAT: &str = "2";
/// What 0.5.0 and 0.6.0 wrote: without the point in history, so not continued (list.rs).
pub const EARLIER_FORMAT: &[u8] = b"1/";

/// A snapshot's view of transaction ids, as full (64-bit) ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizon {
    /// The generation the ids were stamped in where it was taken.
    pub generation: i64,
    pub xmin: u64,
    pub xmax: u64,
    /// Ids between xmin and xmax still in progress, ascending.
    pub in_flight: Vec<u64>,
}

/// The last row a pass returned, in list order (version, updated_at, id: descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub version: i64,
    /// updated_at, in PostgreSQL's microseconds.
    pub updated_at: i64,
    pub id: i64,
}

/// Which cluster's transaction ids a position counts, and where in its history it was handed
/// out (after every transaction its horizons saw ended; on a primary, made durable then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub system_identifier: u64,
    /// The database (its OID): another database of the cluster has rows of its own.
    pub database: u32,
    pub taken: Point,
    /// Handed out by a transaction that had written conversations (own_writes.rs): good once it
    /// committed.
    pub tentative: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The list's type (None: every type). A position continues only its own list.
    pub list_type: Option<i16>,
    pub origin: Origin,
    /// What the client has: every change this horizon saw. None: nothing yet (the first pass
    /// leaves hidden conversations out).
    pub since: Option<Horizon>,
    /// A pass under way: its horizon and its last row.
    pub pass: Option<(Horizon, Cursor)>,
}

impl Horizon {
    /// The active snapshot: the one the calling statement (and so our statement) reads with.
    pub fn of_active_snapshot(generation: i64) -> Horizon {
        // SAFETY: a function called from a query runs with an active snapshot; its arrays hold
        // xcnt and subxcnt ids.
        unsafe {
            let (snapshot, widen) = active_snapshot();
            let (xmin, xmax) = (widen(snapshot.xmin), widen(snapshot.xmax));
            let ids = |array: *mut pg_sys::TransactionId, count: usize| {
                if array.is_null() || count == 0 {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(array, count)
                }
            };
            let mut in_flight: Vec<u64> = ids(snapshot.xip, snapshot.xcnt as usize).iter().map(|&xid| widen(xid)).collect();
            if snapshot.takenDuringRecovery {
                // On a standby every id in progress on the primary is in subxip. A snapshot there
                // that overflowed (a transaction with many subtransactions, or one under
                // wal_level = logical) lacks some subtransactions' ids, never a top-level one's
                // (a subtransaction's id makes its parent's known too), and top-level ids are
                // all a stamp is made of: it is still exact.
                in_flight.extend(ids(snapshot.subxip, snapshot.subxcnt.max(0) as usize).iter().map(|&xid| widen(xid)));
            }
            in_flight.retain(|&xid| xid >= xmin && xid < xmax);
            // This transaction's own writes are visible to it but not committed: for the
            // position they are in flight, so a later call returns them again once they are.
            // (At or past xmax it is not seen anyway.)
            let own = pg_sys::GetTopFullTransactionIdIfAny().value;
            let xmin = if own >= u64::from(pg_sys::FirstNormalTransactionId.into_inner()) && own < xmax {
                in_flight.push(own);
                xmin.min(own)
            } else {
                xmin
            };
            in_flight.sort_unstable();
            in_flight.dedup();
            Horizon { generation, xmin, xmax, in_flight }
        }
    }

    /// Whether the active snapshot has seen every transaction this horizon saw, as far as it can
    /// tell: it reaches as far (xmax), and on a primary no top-level transaction in progress for
    /// it is one the horizon took as finished. Otherwise the reader is behind the position (a
    /// replica that has not replayed as far, a REPEATABLE READ transaction's older snapshot, a
    /// server whose transaction counter is behind the one the position was taken on): the rows it
    /// would return are older than what the client already has, and the position it would hand out
    /// would claim changes it never sent.
    ///
    /// A standby's snapshot lists the primary's subtransactions among its ids in progress, and
    /// cannot tell them from top-level ones, which are all a horizon of the primary lists: there
    /// only xmax is compared (a transaction whose commit the standby has not replayed while it has
    /// replayed a later one's end is not caught).
    pub fn is_covered_by_active_snapshot(&self) -> bool {
        // SAFETY: as in `of_active_snapshot`.
        unsafe {
            let (snapshot, widen) = active_snapshot();
            if self.xmax > widen(snapshot.xmax) {
                return false;
            }
            if snapshot.takenDuringRecovery || snapshot.xip.is_null() {
                return true;
            }
            let saw = |xid: u64| xid < self.xmax && self.in_flight.binary_search(&xid).is_err();
            std::slice::from_raw_parts(snapshot.xip, snapshot.xcnt as usize).iter().all(|&xid| !saw(widen(xid)))
        }
    }

    /// Whether this horizon saw the end of transaction `xid` (a full id, perhaps of a
    /// subtransaction): the ids it lists in progress are top-level ones, so a subtransaction's is
    /// taken up to its top-level transaction while pg_subtrans still knows it. Older than that, it
    /// counts as seen only if nothing the horizon listed in progress could be its parent (a
    /// parent's id is below its children's).
    pub fn saw_end_of(&self, xid: u64) -> bool {
        if xid < self.xmin {
            return true;
        }
        if xid >= self.xmax {
            return false;
        }
        // SAFETY: pg_subtrans is read for ids at or above this backend's TransactionXmin, which
        // it keeps (the caller runs with a snapshot).
        let top = unsafe {
            let short = pg_sys::TransactionId::from((xid & 0xFFFF_FFFF) as u32);
            if pg_sys::TransactionIdFollowsOrEquals(short, pg_sys::TransactionXmin) {
                let top = pg_sys::SubTransGetTopmostTransaction(short);
                Some(xid::full_xid(top.into_inner(), pg_sys::ReadNextFullTransactionId().value))
            } else {
                None
            }
        };
        match top {
            Some(top) => top < self.xmin || (top < self.xmax && self.in_flight.binary_search(&top).is_err()),
            None => self.in_flight.first().is_none_or(|&first| first > xid),
        }
    }

    /// The versions a statement compares with: everything below `floor` was seen; everything at
    /// or above `ceiling` was not (a later generation's too); between them, only `in_flight` was
    /// not.
    pub fn versions(&self) -> (i64, i64, Vec<i64>) {
        let generation = self.generation;
        (
            version::version_of(generation, self.xmin),
            version::version_of(generation, self.xmax),
            self.in_flight.iter().map(|&xid| version::version_of(generation, xid)).collect(),
        )
    }

    /// The horizon, or, when it lists more than `MAX_WRITTEN_IN_FLIGHT` ids in progress, one that
    /// sees nothing from its xmin on (`xmin:xmin:`). That sees less, never more, so what it
    /// returns is a superset (a row may come back again, none is lost), while neither a statement
    /// nor a page's positions (each row repeats its pass's horizons) carry thousands of ids.
    fn coarsened(&self) -> Horizon {
        if self.in_flight.len() > MAX_WRITTEN_IN_FLIGHT {
            Horizon { generation: self.generation, xmin: self.xmin, xmax: self.xmin, in_flight: Vec::new() }
        } else {
            self.clone()
        }
    }

    /// Writes the horizon, coarsened.
    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        if self.in_flight.len() > MAX_WRITTEN_IN_FLIGHT {
            return self.coarsened().write(out);
        }
        let _ = write!(out, "{}:{}:{}:", self.generation, self.xmin, self.xmax);
        for (i, xid) in self.in_flight.iter().enumerate() {
            let _ = write!(out, "{}{xid}", if i > 0 { "," } else { "" });
        }
    }

    fn parse(text: &str) -> Option<Horizon> {
        let mut parts = text.splitn(4, ':');
        let generation: i64 = parts.next()?.parse().ok()?;
        let xmin: u64 = parts.next()?.parse().ok()?;
        let xmax: u64 = parts.next()?.parse().ok()?;
        let list = parts.next()?;
        let in_flight =
            if list.is_empty() { Vec::new() } else { list.split(',').map(|xid| xid.parse::<u64>().ok()).collect::<Option<Vec<u64>>>()? };
        let ordered = in_flight.windows(2).all(|pair| pair[0] < pair[1]);
        let inside = in_flight.iter().all(|&xid| xid >= xmin && xid < xmax);
        let known = (0..=version::MAX_GENERATION).contains(&generation);
        (known && xmin <= xmax && ordered && inside && xmax <= version::XID_MASK).then_some(Horizon { generation, xmin, xmax, in_flight })
    }
}

impl Position {
    /// The position with its horizons coarsened (`Horizon::coarsened`): what it reads is a
    /// superset of what it would have read. Checked against the reader's snapshot before this.
    pub fn coarsened(self) -> Position {
        Position {
            since: self.since.as_ref().map(Horizon::coarsened),
            pass: self.pass.as_ref().map(|(horizon, cursor)| (horizon.coarsened(), *cursor)),
            ..self
        }
    }

    /// The most in-flight ids one of its horizons lists: at most what this server's snapshots can
    /// hold (`max_in_flight`) in a position it wrote.
    pub fn in_flight_count(&self) -> usize {
        let since = self.since.as_ref().map_or(0, |since| since.in_flight.len());
        since.max(self.pass.as_ref().map_or(0, |(horizon, _)| horizon.in_flight.len()))
    }
}

/// The most in-flight ids a horizon of this server can list: a snapshot's top-level ids and
/// (on a standby, where every id in progress is listed as a subtransaction's) its subtransaction
/// ids, and the caller's own. A position listing more was not written here, and is refused before
/// its ids are compared with any row: a crafted one would make every statement carry them.
pub fn max_in_flight() -> usize {
    // SAFETY: the sizes PostgreSQL allocates snapshots' arrays with, fixed at startup.
    let (top_level, subtransactions) = unsafe { (pg_sys::GetMaxSnapshotXidCount(), pg_sys::GetMaxSnapshotSubxidCount()) };
    top_level.max(0) as usize + subtransactions.max(0) as usize + 1
}

/// The active snapshot, and how to widen its ids to full ones (against the next full id, read
/// after the snapshot was taken).
///
/// # Safety
/// Called from a query, which runs with an active snapshot; the reference lives for the call.
unsafe fn active_snapshot<'a>() -> (&'a pg_sys::SnapshotData, impl Fn(pg_sys::TransactionId) -> u64) {
    let snapshot = pg_sys::GetActiveSnapshot();
    assert!(!snapshot.is_null(), "no active snapshot");
    let next = pg_sys::ReadNextFullTransactionId().value;
    (&*snapshot, move |xid: pg_sys::TransactionId| xid::full_xid(xid.into_inner(), next))
}

impl Cursor {
    /// Before every row: where a pass starts.
    pub const TOP: Cursor = Cursor { version: i64::MAX, updated_at: i64::MAX, id: i64::MAX };

    fn parse(text: &str) -> Option<Cursor> {
        let mut parts = text.split(':');
        let cursor =
            Cursor { version: parts.next()?.parse().ok()?, updated_at: parts.next()?.parse().ok()?, id: parts.next()?.parse().ok()? };
        parts.next().is_none().then_some(cursor)
    }
}

impl Position {
    /// None when `text` is not a position this module wrote.
    pub fn parse(text: &[u8]) -> Option<Position> {
        let text = std::str::from_utf8(text).ok()?;
        let fields: Vec<&str> = text.split('/').collect();
        let [format, list_type, system_identifier, taken, since, pass, cursor] = fields.as_slice() else { return None };
        if *format != FORMAT {
            return None;
        }
        let list_type = match *list_type {
            "*" => None,
            t => Some(t.parse::<i16>().ok()?),
        };
        let mut parts = taken.split(':');
        let taken = Point { timeline: parts.next()?.parse().ok()?, lsn: parts.next()?.parse().ok()? };
        let tentative = match parts.next() {
            None => None,
            Some(xid) => Some(xid.parse().ok()?),
        };
        if parts.next().is_some() {
            return None;
        }
        let (system_identifier, database) = system_identifier.split_once(':')?;
        let origin = Origin { system_identifier: system_identifier.parse().ok()?, database: database.parse().ok()?, taken, tentative };
        let since = match *since {
            "-" => None,
            horizon => Some(Horizon::parse(horizon)?),
        };
        let pass = match (*pass, *cursor) {
            ("-", "-") => None,
            ("-", _) | (_, "-") => return None,
            (horizon, cursor) => Some((Horizon::parse(horizon)?, Cursor::parse(cursor)?)),
        };
        Some(Position { list_type, origin, since, pass })
    }
}

/// `2/<type>/<system id>:<database>/<timeline>:<lsn>[:<tentative on>]/`: what every position a call hands
/// out begins with.
fn head(list_type: Option<i16>, origin: Origin) -> String {
    let list_type = list_type.map_or_else(|| "*".to_string(), |t| t.to_string());
    let tentative = origin.tentative.map_or_else(String::new, |xid| format!(":{xid}"));
    format!(
        "{FORMAT}/{list_type}/{}:{}/{}:{}{tentative}/",
        origin.system_identifier, origin.database, origin.taken.timeline, origin.taken.lsn
    )
}

/// The positions of one pass's rows, written once for what they share (a page's rows differ
/// only in their cursor).
pub struct PassPositions {
    /// Up to the cursor of a row the pass goes on after.
    in_pass: String,
    /// After the pass's last row: its horizon is the new "since".
    pub done: String,
}

impl PassPositions {
    pub fn new(list_type: Option<i16>, origin: Origin, since: Option<&Horizon>, horizon: &Horizon) -> PassPositions {
        let head = head(list_type, origin);
        let mut in_pass = head.clone();
        match since {
            Some(since) => since.write(&mut in_pass),
            None => in_pass.push('-'),
        }
        in_pass.push('/');
        horizon.write(&mut in_pass);
        in_pass.push('/');
        let mut done = head;
        horizon.write(&mut done);
        done.push_str("/-/-");
        PassPositions { in_pass, done }
    }

    /// After a row at `cursor`, the pass going on.
    pub fn after(&self, cursor: Cursor) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(self.in_pass.len() + 40);
        out.push_str(&self.in_pass);
        let _ = write!(out, "{}:{}:{}", cursor.version, cursor.updated_at, cursor.id);
        out
    }
}

#[cfg(test)]
impl Position {
    /// As list.rs writes it (PassPositions).
    fn to_text(&self) -> String {
        match (&self.since, &self.pass) {
            (since, Some((horizon, cursor))) => PassPositions::new(self.list_type, self.origin, since.as_ref(), horizon).after(*cursor),
            (Some(since), None) => PassPositions::new(self.list_type, self.origin, None, since).done,
            (None, None) => format!("{}-/-/-", head(self.list_type, self.origin)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn horizon(xmin: u64, xmax: u64, in_flight: &[u64]) -> Horizon {
        Horizon { generation: 3, xmin, xmax, in_flight: in_flight.to_vec() }
    }

    #[test]
    fn round_trips() {
        let origin = Origin {
            system_identifier: 7_312_345_678_901_234_567,
            database: 16384,
            taken: Point { timeline: 2, lsn: 0x1_0000_0028 },
            tentative: None,
        };
        for position in [
            Position { list_type: None, origin, since: None, pass: None },
            Position { list_type: Some(1), origin, since: Some(horizon(10, 20, &[11, 15])), pass: None },
            Position {
                list_type: Some(-2),
                origin,
                since: None,
                pass: Some((horizon(5, 5, &[]), Cursor { version: -1, updated_at: -86_400_000_000, id: 42 })),
            },
            Position { list_type: Some(2), origin, since: Some(horizon(1, 2, &[1])), pass: Some((horizon(9, 12, &[10]), Cursor::TOP)) },
        ] {
            let text = position.to_text();
            assert_eq!(Position::parse(text.as_bytes()), Some(position.clone()), "{text}");
            let tentative = Position { origin: Origin { tentative: Some(7_000_000_001), ..position.origin }, ..position };
            let text = tentative.to_text();
            assert_eq!(Position::parse(text.as_bytes()), Some(tentative), "{text}");
        }
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        for text in [
            "",
            "2",
            "1/*/1/0/-/-/-",
            "1/*/1/0/1:0/-/-/-",
            "2/*/1:5/1:0/-/-",
            "2/*/1/1:0/-/-/-",
            "2/*/1:/1:0/-/-/-",
            "2/*/1:5/1:0/-/-/-/",
            "2/x/1:5/1:0/-/-/-",
            "2/*/-1:5/1:0/-/-/-",
            "2/*/1:5/1/-/-/-",
            "2/*/1:5/1:/-/-/-",
            "2/*/1:5/:5/-/-/-",
            "2/*/1:5/-1:5/-/-/-",
            "2/*/1:5/1:5:/-/-/-",
            "2/*/1:5/1:5:x/-/-/-",
            "2/*/1:5/1:5:7:8/-/-/-",
            "2/*/1:5/1:0/32768:4:9:/-/-",
            "2/*/1:5/1:0/-1:4:9:/-/-",
            "2/*/1:5/1:0/4:9:/-/-",
            "2/*/1:5/1:0/0:5:4:/-/-",
            "2/*/1:5/1:0/0:4:9:7,6/-/-",
            "2/*/1:5/1:0/0:4:9:3/-/-",
            "2/*/1:5/1:0/0:4:9:9/-/-",
            "2/*/1:5/1:0/0:4:9:5,5/-/-",
            "2/*/1:5/1:0/-/0:4:9:/-",
            "2/*/1:5/1:0/-/-/1:2:3",
            "2/*/1:5/1:0/-/0:4:9:/1:2",
            "2/*/1:5/1:0/-/0:4:9:/1:2:3:4",
            "2/*/1:5/1:0/0:281474976710656:281474976710657:/-/-",
            "2/*/1:5/1:0/ 0:4:9:/-/-",
        ] {
            assert_eq!(Position::parse(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(Position::parse(b"2/*/1:5/1:0/\xff/-/-"), None);
        assert!(Position::parse(b"2/*/1:5/1:0/-/-/-").is_some());
    }

    #[test]
    fn a_horizon_of_too_many_ids_is_written_as_seeing_less() {
        let origin = Origin { system_identifier: 1, database: 5, taken: Point { timeline: 1, lsn: 42 }, tentative: None };
        let many: Vec<u64> = (100..100 + MAX_WRITTEN_IN_FLIGHT as u64 + 1).collect();
        let since = Horizon { generation: 0, xmin: 100, xmax: 5000, in_flight: many };
        let now = Horizon { generation: 0, ..horizon(6000, 6010, &[6001]) };
        let positions = PassPositions::new(None, origin, Some(&since), &now);
        let after = positions.after(Cursor { version: 7, updated_at: 8, id: 9 });
        assert_eq!(after, "2/*/1:5/1:42/0:100:100:/0:6000:6010:6001/7:8:9");
        // Seeing less: every id the original did not see, this one does not see either.
        let coarse = Position::parse(after.as_bytes()).unwrap().since.unwrap();
        assert_eq!((coarse.xmin, coarse.xmax, coarse.in_flight.len()), (100, 100, 0));
        // Up to the limit, written as it is.
        let few = Horizon { generation: 0, xmin: 100, xmax: 5000, in_flight: (100..100 + MAX_WRITTEN_IN_FLIGHT as u64).collect() };
        let text = PassPositions::new(None, origin, Some(&few), &now).after(Cursor::TOP);
        assert_eq!(Position::parse(text.as_bytes()).unwrap().since, Some(few));
    }
}
