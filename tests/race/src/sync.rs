//! Sync race: writers change users' conversations in transactions that commit out of order (each
//! sleeps a random while after writing, so a later transaction often commits first), while every
//! user's client syncs in a loop with conversation_list, keeping the position of the last row it
//! got. Claims:
//!
//! - when the writers stop, one more round of syncs brings every client exactly the table: every
//!   conversation it holds is the stored row (every column, version included), it holds every
//!   conversation that is not hidden, and none that left its list (writers delete rows and move
//!   them to other users; messages bring deleted ones back);
//! - a position is never ahead of a change not returned: otherwise the final state differs;
//! - the same with channels made large and per member again among the writes (on Citus too): a
//!   membership is held as it stands, its channel's messages included;
//! - no error at all under READ COMMITTED; REPEATABLE READ / SERIALIZABLE readers see none either
//!   (they only read).
//!
//! `--naive` syncs the way applications do without the extension, "updated_at after the newest I
//! have", to show that this test catches the changes such a client loses.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use postgres::{Client, IsolationLevel, NoTls};

use crate::retry::Random;
use crate::{at_levels, on_citus, Options, LEVELS};

const USERS: usize = 4;
const CHANNELS: usize = 12;
const PAGE_SIZE: i32 = 3;
const TRANSACTIONS_PER_WRITER: usize = 60;
/// How long the writers may take: about 10 s on 2 cores (60 transactions of a few ms each, waits
/// for each other's locks included).
const WRITERS_TIME_LIMIT: Duration = Duration::from_secs(300);
/// Syncs returning rows a client may make after the last write: each user has at most 2 x CHANNELS
/// conversations and as many departures, so a few dozen pages bring them all (a failover relists
/// from the start). More means a sync that keeps returning rows: reported, not looped on.
const MAX_CALLS_AFTER_WRITES: usize = 500;

/// What a client holds of one conversation: the columns a list shows.
type Held = BTreeMap<String, String>;

const COLUMNS: &str =
    "format('%s/%s/%s/%s/%s/%s/%s', last_msg_seq, readed_to_msg_seq, unread_count, deleted_at_msg_seq, hidden, version, updated_at)";

pub fn races(options: &Options) -> (usize, usize) {
    // --autocommit: each sync a statement of its own (on Citus, delegated to the user's node).
    // --failover: once (the standby is promoted by the first race).
    let levels = if options.autocommit || options.failover { &LEVELS[..1] } else { &LEVELS[..] };
    at_levels(levels, |name, level| race(options, name, level))
}

fn race(options: &Options, level_name: &str, level: IsolationLevel) -> Vec<String> {
    let prefix = format!("sync-{}-{}", std::process::id(), level_name.replace(' ', "-"));
    let users: Vec<String> = (0..USERS).map(|u| format!("{prefix}-user{u}")).collect();
    let channel = |c: usize| format!("{prefix}-ch{c}");
    let writers = options.clients.max(2);
    let barrier = Arc::new(Barrier::new(writers + USERS));
    let writing = Arc::new(AtomicUsize::new(writers));
    // --failover: set once the standby is promoted; everyone then uses it.
    let promoted = Arc::new(AtomicBool::new(false));
    let failover_to = options.failover.then(|| options.standby.clone().expect("--failover needs --standby"));
    let citus = on_citus(&options.dsn);

    let writer_handles: Vec<_> = (0..writers)
        .map(|w| {
            let (dsn, users, barrier, writing) = (options.dsn.clone(), users.clone(), barrier.clone(), writing.clone());
            let (promoted, failover_to) = (promoted.clone(), failover_to.clone());
            let channels: Vec<String> = (0..CHANNELS).map(channel).collect();
            thread::spawn(move || {
                let mut db = Client::connect(&dsn, NoTls).expect("connect");
                let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ ((w as u64 + 1) * 7919));
                let mut problems = Vec::new();
                let mut moved = false;
                barrier.wait();
                for t in 0..TRANSACTIONS_PER_WRITER {
                    if let Some(new_primary) = &failover_to {
                        // Half-way, the first writer promotes the standby; each writer then moves
                        // to it (what the old primary commits meanwhile is lost, as in a failover).
                        if w == 0 && t == TRANSACTIONS_PER_WRITER / 2 {
                            let mut standby = Client::connect(new_primary, NoTls).expect("connect to the standby");
                            standby.execute("SELECT pg_promote(true, 60)", &[]).expect("promote the standby");
                            promoted.store(true, Ordering::SeqCst);
                        }
                        if promoted.load(Ordering::SeqCst) && !moved {
                            db = Client::connect(new_primary, NoTls).expect("connect to the new primary");
                            moved = true;
                        }
                    }
                    let result = (|| -> Result<(), postgres::Error> {
                        let mut tx = db.transaction()?;
                        for _ in 0..1 + random.below(3) {
                            let ch = &channels[random.below(CHANNELS)];
                            let user = &users[random.below(USERS)];
                            match random.below(9) {
                                0 | 1 => {
                                    // A message to some members; the seq grows with the writer's clock.
                                    let members: Vec<&String> = users.iter().filter(|_| random.below(2) == 0).collect();
                                    let seq = ((t * writers + w) * 10 + 1) as i64;
                                    tx.execute("SELECT conversation_message_arrived($1, 1, $2, $3, $4)", &[ch, &members, &seq, user])?;
                                }
                                2 => {
                                    // A random position, ahead of the last message by as much as a read may be.
                                    tx.execute(
                                        "SELECT conversation_mark_read($1, $2, 1, greatest(1, least($3::bigint, coalesce(
                                             (SELECT c.last_msg_seq FROM conversation AS c
                                              WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = 1), 0) + 1000)))",
                                        &[user, ch, &(random.below(5000) as i64 + 1)],
                                    )?;
                                }
                                3 => {
                                    tx.execute("SELECT conversation_hide($1, $2, 1)", &[user, ch])?;
                                }
                                4 => {
                                    tx.execute("SELECT conversation_clear($1, $2, 1)", &[user, ch])?;
                                }
                                5 => {
                                    // A departure: the conversation deleted (a message may bring it back).
                                    tx.execute("DELETE FROM conversation WHERE uid = $1 AND channel_id = $2 AND channel_type = 1", &[user, ch])?;
                                }
                                6 if citus || random.below(2) == 0 => {
                                    // A departure from the chats: the conversation moved to the CMD list.
                                    tx.execute(
                                        "UPDATE conversation SET channel_id = channel_id || '____cmd'
                                         WHERE uid = $1 AND channel_id = $2 AND channel_type = 1
                                           AND NOT EXISTS (SELECT 1 FROM conversation AS o
                                                           WHERE o.uid = $1 AND o.channel_id = $2 || '____cmd' AND o.channel_type = 1)",
                                        &[user, ch],
                                    )?;
                                }
                                6 => {
                                    // A departure and an arrival: the conversation moved to another user's list
                                    // (not on Citus, which does not change a row's distribution column).
                                    let to = &users[random.below(USERS)];
                                    tx.execute(
                                        "UPDATE conversation SET uid = $3 WHERE uid = $1 AND channel_id = $2 AND channel_type = 1
                                           AND NOT EXISTS (SELECT 1 FROM conversation AS o WHERE o.uid = $3 AND o.channel_id = $2 AND o.channel_type = 1)",
                                        &[user, ch, to],
                                    )?;
                                }
                                8 => {
                                    // The channel made large (its members some of the users) or per member
                                    // again: every membership's values stay what they were, and what
                                    // messages to a large channel change is its channel row's.
                                    let members: Vec<&String> = users.iter().filter(|_| random.below(2) == 0).collect();
                                    tx.execute(
                                        "SELECT CASE WHEN EXISTS (SELECT 1 FROM conversation_channel WHERE channel_id = $1 AND channel_type = 1)
                                                     THEN conversation_channel_make_per_member($1, 1)
                                                     ELSE conversation_channel_make_large($1, 1, $2) END",
                                        &[ch, &members],
                                    )?;
                                }
                                _ => {
                                    // The application's own SQL: stamped all the same.
                                    tx.execute(
                                        "UPDATE conversation SET unread_count = unread_count + 1 WHERE uid = $1 AND channel_id = $2",
                                        &[user, ch],
                                    )?;
                                }
                            }
                        }
                        // Commit after a while: a transaction that wrote first often commits last.
                        thread::sleep(Duration::from_micros(random.below(4000) as u64));
                        tx.commit()
                    })();
                    if let Err(error) = result {
                        // Two writers of one row in opposite orders (a deadlock), two moving rows to
                        // one key (a unique violation), a read computed from a row that another
                        // writer then deleted (so it is ahead of the one made again), or, on a
                        // partitioned table, a row another writer moved to another user's partition,
                        // which PostgreSQL cannot follow even under READ COMMITTED (40001): the
                        // writers' own affair (the test's random writes), retried by nobody; any
                        // other error is not.
                        let own_affair = match error.as_db_error() {
                            Some(db) => {
                                matches!(db.code().code(), "40P01" | "23505")
                                    || (db.code().code() == "22023" && db.message().contains("ahead of the conversation's last message"))
                                    || (db.code().code() == "40001" && db.message().contains("already moved to another partition"))
                            }
                            None => false,
                        };
                        if !own_affair {
                            let detail = error.as_db_error().map_or_else(|| error.to_string(), |db| format!("{}: {}", db.code().code(), db.message()));
                            problems.push(format!("writer {w}: {detail}"));
                        }
                    }
                }
                writing.fetch_sub(1, Ordering::SeqCst);
                problems
            })
        })
        .collect();

    let client_handles: Vec<_> = users
        .iter()
        .map(|user| {
            let (dsn, user, barrier, writing) = (options.dsn.clone(), user.clone(), barrier.clone(), writing.clone());
            let (naive, autocommit, standby) = (options.naive, options.autocommit, options.standby.clone());
            let (promoted, failover) = (promoted.clone(), options.failover);
            thread::spawn(move || {
                let mut db = Client::connect(&dsn, NoTls).expect("connect");
                let mut standby = standby.map(|dsn| Client::connect(&dsn, NoTls).expect("connect to the standby"));
                let mut client = SyncClient::new(naive, autocommit);
                let mut problems = Vec::new();
                let (mut calls, mut behind, mut relisted) = (0usize, 0usize, 0usize);
                barrier.wait();
                // Sync while the writers write; then until a sync on the primary after the last
                // write brings nothing. With a standby, every other page is read there.
                let (mut quiet_rounds, mut busy_after_writes) = (0, 0);
                loop {
                    let done_writing = writing.load(Ordering::SeqCst) == 0;

                    // After a failover, the promoted standby is the primary.
                    let failed_over = promoted.load(Ordering::SeqCst);
                    let on_standby = (calls % 2 == 1 || failed_over) && standby.is_some();
                    let server = if on_standby { standby.as_mut().expect("a standby") } else { &mut db };
                    match client.sync(server, &user, level) {
                        Ok(got) => {
                            calls += 1;
                            busy_after_writes += usize::from(done_writing && got > 0);
                            if busy_after_writes > MAX_CALLS_AFTER_WRITES {
                                problems.push(format!(
                                    "client of {user}: {MAX_CALLS_AFTER_WRITES} syncs after the last write still returned rows (the last page: {:?})",
                                    client.last_page
                                ));
                                break;
                            }
                            if done_writing && got == 0 && (!on_standby || failed_over) {
                                quiet_rounds += 1;
                                if quiet_rounds == 2 {
                                    break;
                                }
                            }
                        }
                        // Behind the position: the standby has not replayed as far; or, for a
                        // moment, the primary, whose snapshot can still show running a transaction
                        // whose commit the standby has replayed already. Retry.
                        Err(error) if standby.is_some() && error.code() == Some(&postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) => {
                            behind += 1;
                            thread::sleep(std::time::Duration::from_millis(5));
                        }
                        // A position the new primary's history does not contain (taken past what it
                        // had replayed, or on the old primary after the switch): list from the start.
                        Err(error) if failover && error.code() == Some(&postgres::error::SqlState::SNAPSHOT_TOO_OLD) => {
                            relisted += 1;
                            client.start_over();
                        }
                        Err(error) => {
                            let detail = error
                                .as_db_error()
                                .map_or_else(|| error.to_string(), |db| format!("{}: {}", db.code().code(), db.message()));
                            problems.push(format!(
                                "client of {user}{}: {detail}",
                                if on_standby { " on the standby" } else { " on the primary" }
                            ));
                            break;
                        }
                    }
                }
                (user, client.held, problems, calls, behind, relisted)
            })
        })
        .collect();

    // Writers that do not finish (a lock wait nobody resolves) would keep the clients syncing,
    // and the test waiting, for ever: after a while, say what the sessions wait for and stop.
    let started = std::time::Instant::now();
    while writing.load(Ordering::SeqCst) > 0 {
        if started.elapsed() > WRITERS_TIME_LIMIT {
            let mut db = Client::connect(failover_to.as_ref().unwrap_or(&options.dsn), NoTls).expect("connect");
            let waits = db
                .query(
                    "SELECT format('%s %s/%s %s: %s', pid, wait_event_type, wait_event, state, left(query, 120))
                     FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .map(|rows| rows.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>())
                .unwrap_or_default();
            println!("FAILED: {level_name}: the writers did not finish in {WRITERS_TIME_LIMIT:?}; the sessions here:");
            for wait in waits {
                println!("  {wait}");
            }
            std::process::exit(1);
        }
        thread::sleep(Duration::from_millis(100));
    }
    let mut problems: Vec<String> = writer_handles.into_iter().flat_map(|h| h.join().expect("writer panicked")).collect();
    // The table to compare with: after a failover, the new primary's.
    let mut db = Client::connect(failover_to.as_ref().unwrap_or(&options.dsn), NoTls).expect("connect");
    let (mut calls, mut behind, mut relisted) = (0, 0, 0);
    for handle in client_handles {
        let (user, held, client_problems, client_calls, client_behind, client_relisted) = handle.join().expect("client panicked");
        calls += client_calls;
        behind += client_behind;
        relisted += client_relisted;
        problems.extend(client_problems);
        let stored: Vec<(String, String, bool)> = db
            .query(
                // Each row as the functions return it (a membership of a large channel as it stands).
                &format!(
                    "SELECT channel_id, {COLUMNS}, hidden FROM (SELECT c.* FROM conversation AS r,
                         LATERAL find_conversation(r.uid, r.channel_id, r.channel_type) AS c WHERE r.uid = $1 AND r.type = 1) AS conversation
                     ORDER BY channel_id"
                ),
                &[&user],
            )
            .expect("the table")
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let mut missing = 0;
        let mut differ = 0;
        for (channel, columns, hidden) in &stored {
            match held.get(channel) {
                Some(have) if have == columns => {}
                Some(have) => {
                    differ += 1;
                    if differ <= 3 {
                        problems.push(format!("{user} holds {channel} as {have}, the table has {columns}"));
                    }
                }
                None if *hidden => {}
                None => {
                    missing += 1;
                    if missing <= 3 {
                        problems.push(format!("{user} never got {channel} ({columns})"));
                    }
                }
            }
        }
        if differ + missing > 3 {
            problems.push(format!("{user}: {differ} conversations differ from the table, {missing} missing"));
        }
        let gone: Vec<&String> = held.keys().filter(|channel| !stored.iter().any(|(stored, _, _)| stored == *channel)).collect();
        if !gone.is_empty() {
            problems.push(format!(
                "{user} still holds {} conversations that left the list, {:?} among them",
                gone.len(),
                &gone[..gone.len().min(3)]
            ));
        }
    }
    println!(
        "{prefix}: {writers} writers x {TRANSACTIONS_PER_WRITER} transactions committing out of order, {USERS} clients syncing in pages of {PAGE_SIZE} ({calls} calls){}{}",
        if options.naive { ", naive" } else { "" },
        if options.standby.is_some() { format!(", every other page on the standby ({behind} refused while the reader was behind, retried)") } else { String::new() }
    );
    if options.failover {
        println!("{prefix}: the standby promoted half-way and everyone moved to it; {relisted} positions it refused (72000), listed again from the start");
    }
    problems
}

struct SyncClient {
    naive: bool,
    autocommit: bool,
    position: Option<String>,
    newest: Option<String>,
    held: Held,
    /// The last page (channel, departed, position), to say what a sync that never ends returns.
    last_page: Vec<(String, bool, String)>,
}

impl SyncClient {
    fn new(naive: bool, autocommit: bool) -> SyncClient {
        SyncClient { naive, autocommit, position: None, newest: None, held: Held::new(), last_page: Vec::new() }
    }

    /// One call: applies what it returns and keeps the position after the last row. Returns how
    /// many rows came back.
    fn sync(&mut self, db: &mut Client, user: &str, level: IsolationLevel) -> Result<usize, postgres::Error> {
        if self.autocommit {
            let rows = db.query(
                &format!("SELECT channel_id, {COLUMNS}, position, departed FROM conversation_list($1, 1, $2, $3)"),
                &[&user, &self.position, &PAGE_SIZE],
            )?;
            return Ok(self.apply(&rows));
        }
        let mut tx = db.build_transaction().isolation_level(level).read_only(true).start()?;
        let rows = if self.naive {
            tx.query(
                &format!(
                    "SELECT channel_id, {COLUMNS}, updated_at::text, false FROM conversation
                     WHERE uid = $1 AND type = 1 AND updated_at > COALESCE($2::text::timestamptz, '-infinity')
                     ORDER BY updated_at, id LIMIT $3"
                ),
                &[&user, &self.newest, &i64::from(PAGE_SIZE)],
            )?
        } else {
            tx.query(
                &format!("SELECT channel_id, {COLUMNS}, position, departed FROM conversation_list($1, 1, $2, $3)"),
                &[&user, &self.position, &PAGE_SIZE],
            )?
        };
        tx.commit()?;
        Ok(self.apply(&rows))
    }

    /// After 72000: forget everything and list from the start.
    fn start_over(&mut self) {
        self.position = None;
        self.held.clear();
    }

    fn apply(&mut self, rows: &[postgres::Row]) -> usize {
        self.last_page = rows.iter().map(|row| (row.get(0), row.get(3), row.get(2))).collect();
        for row in rows {
            // A departure: the conversation left this list (deleted, or moved to another user).
            if row.get::<_, bool>(3) {
                self.held.remove(&row.get::<_, String>(0));
            } else {
                self.held.insert(row.get(0), row.get(1));
            }
        }
        if let Some(last) = rows.last() {
            if self.naive {
                self.newest = Some(last.get(2));
            } else {
                self.position = Some(last.get(2));
            }
        }
        rows.len()
    }
}
