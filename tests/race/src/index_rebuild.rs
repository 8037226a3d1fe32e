//! A list index replaced by a DBA under traffic, the usual way (DROP INDEX, then CREATE INDEX
//! CONCURRENTLY under its name), while clients list, sync, read their badge and write (messages,
//! reads, and the application's own INSERT):
//!
//! 1. a build that fails before the index is ready (lock_timeout while a writer is open): the
//!    index is left in the catalog, not ready;
//! 2. a build that fails after it is ready (lock_timeout while an old snapshot is held): the index
//!    is left ready but not valid, missing rows written during the build;
//! 3. a build that succeeds; then REINDEX INDEX CONCURRENTLY of another list index.
//!
//! Claims: not one call fails, in any client; after each step every user's list and badge equal
//! what SQL reads from the table in the same snapshot; afterwards amcheck finds every btree index
//! of the table sound, and a plain INSERT works, without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use postgres::{Client, IsolationLevel, NoTls};

use crate::{report, Options};

const USERS: usize = 8;
const CHANNELS: usize = 40;
const INDEX: &str = "conversation_list_read_idx";
const DEFINITION: &str = "ON conversation (uid, type, version, updated_at, id) WHERE unread_count <= 0 AND NOT hidden";

/// SQLSTATE (or "lost connection: ...") -> how many calls ended in it.
type Errors = BTreeMap<String, usize>;

pub fn races(options: &Options) -> (usize, usize) {
    let run = format!("ixr-{}", std::process::id());
    let users: Vec<String> = (0..USERS).map(|u| format!("{run}-u{u}")).collect();
    let mut db = Client::connect(&options.dsn, NoTls).expect("connect");
    for (u, user) in users.iter().enumerate() {
        for c in 0..CHANNELS {
            // Some read, some unread, some hidden: every list index holds rows.
            let channel = format!("{run}-g{c}");
            db.execute("SELECT conversation_message_arrived($1, 1, ARRAY[$2, 'sender'], 1, 'sender')", &[&channel, user])
                .expect("a message");
            if (c + u) % 3 == 0 {
                db.execute("SELECT conversation_mark_read($2, $1, 1, 1)", &[&channel, user]).expect("a read");
            }
            if (c + u) % 11 == 0 {
                db.execute("SELECT conversation_hide($2, $1, 1, NULL)", &[&channel, user]).expect("a hide");
            }
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Errors::new()));
    let calls = Arc::new(Mutex::new(0usize));
    let clients: Vec<_> = (0..options.clients)
        .map(|client| {
            let (stop, errors, calls, dsn, run, users) =
                (stop.clone(), errors.clone(), calls.clone(), options.dsn.clone(), run.clone(), users.clone());
            thread::spawn(move || traffic(client, &dsn, &run, &users, &stop, &errors, &calls))
        })
        .collect();

    let mut problems = Vec::new();
    let mut ddl = Client::connect(&options.dsn, NoTls).expect("connect");
    thread::sleep(Duration::from_millis(300)); // traffic first

    // 1. Not ready: a writer holds the table while the build waits for writers to finish.
    ddl.batch_execute(&format!("DROP INDEX {INDEX}")).expect("drop the index");
    let mut blocker = Client::connect(&options.dsn, NoTls).expect("connect");
    blocker
        .batch_execute(&format!("BEGIN; UPDATE conversation SET unread_count = unread_count WHERE uid = '{}'", users[0]))
        .expect("an open writer");
    problems.extend(failed_build(&mut ddl, "left not ready", false));
    blocker.batch_execute("ROLLBACK").expect("end the writer");
    thread::sleep(Duration::from_millis(500));
    problems.extend(lists_match(&options.dsn, &users, "while a list index is not ready"));

    // 2. Ready, not valid: an old snapshot is held while the build waits for old snapshots.
    ddl.batch_execute(&format!("DROP INDEX {INDEX}")).expect("drop the index left behind");
    blocker.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class").expect("an open snapshot");
    problems.extend(failed_build(&mut ddl, "left ready but not valid", true));
    blocker.batch_execute("COMMIT").expect("end the snapshot");
    thread::sleep(Duration::from_millis(500));
    problems.extend(lists_match(&options.dsn, &users, "while a list index is ready but not valid"));

    // 3. A rebuild that succeeds, and a REINDEX CONCURRENTLY of another list index.
    ddl.batch_execute(&format!("DROP INDEX {INDEX}")).expect("drop the index left behind");
    ddl.batch_execute(&format!("CREATE INDEX CONCURRENTLY {INDEX} {DEFINITION}")).expect("rebuild the index");
    thread::sleep(Duration::from_millis(500));
    problems.extend(lists_match(&options.dsn, &users, "after the rebuild"));
    ddl.batch_execute("REINDEX INDEX CONCURRENTLY conversation_list_unread_idx").expect("reindex");
    thread::sleep(Duration::from_millis(500));
    problems.extend(lists_match(&options.dsn, &users, "after REINDEX CONCURRENTLY"));

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    let errors = errors.lock().unwrap().clone();
    println!("list index rebuilt: {} calls from {} clients; failed calls {errors:?}", calls.lock().unwrap(), options.clients);
    problems.extend(errors.iter().map(|(code, n)| format!("{n} calls failed with {code}")));

    // Without a restart: every btree index of the table is sound, and a plain INSERT works.
    let checked = ddl.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS amcheck;
         SELECT bt_index_check(i.indexrelid, true) FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
         WHERE i.indrelid = 'conversation'::regclass AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')",
    );
    if let Err(error) = checked {
        problems.push(format!("amcheck: {error}"));
    }
    if let Err(error) = ddl.execute("INSERT INTO conversation (uid, channel_id, channel_type) VALUES ($1, 'plain-insert', 1)", &[&users[0]])
    {
        problems.push(format!("a plain INSERT afterwards: {error}"));
    }
    problems.extend(lists_match(&options.dsn, &users, "at the end"));
    let passed = report("a list index dropped and built again concurrently under traffic", &problems);
    (usize::from(passed), usize::from(!passed))
}

/// A CREATE INDEX CONCURRENTLY of the list index that times out waiting; the index it leaves must
/// be ready (or not) and not valid.
fn failed_build(ddl: &mut Client, what: &str, ready: bool) -> Vec<String> {
    // Each statement alone: a string of several runs as one transaction, where CONCURRENTLY cannot.
    ddl.batch_execute("SET lock_timeout = '2s'").expect("set lock_timeout");
    let built = ddl.batch_execute(&format!("CREATE INDEX CONCURRENTLY {INDEX} {DEFINITION}"));
    ddl.batch_execute("RESET lock_timeout").expect("reset");
    let mut problems = Vec::new();
    match built {
        Err(error) if error.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {}
        other => problems.push(format!("the build to be {what} ended with {other:?}, not a lock timeout")),
    }
    let state = ddl
        .query_opt(
            "SELECT i.indisready, i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid WHERE c.relname = $1",
            &[&INDEX],
        )
        .expect("the index's state");
    match state.map(|row| (row.get::<_, bool>(0), row.get::<_, bool>(1))) {
        Some((is_ready, false)) if is_ready == ready => {}
        other => problems.push(format!("the build to be {what} left (ready, valid) = {other:?}")),
    }
    problems
}

/// Each user's list (every page, one call) and badge against the table, read in one snapshot.
fn lists_match(dsn: &str, users: &[String], when: &str) -> Vec<String> {
    let mut db = Client::connect(dsn, NoTls).expect("connect");
    let mut problems = Vec::new();
    for user in users {
        match list_and_table(&mut db, user) {
            Ok((listed, stored, badge, counted)) => {
                if listed != stored {
                    problems.push(format!("{when}: {user}'s list has {} rows, the table {}", listed.len(), stored.len()));
                }
                if badge != counted {
                    problems.push(format!("{when}: {user}'s badge is {badge:?}, the table says {counted:?}"));
                }
            }
            Err(error) => problems.push(format!("{when}: {user}'s list or badge failed: {error}")),
        }
    }
    problems
}

type Ids = BTreeSet<i64>;

/// A badge: the unread total and how many conversations have unread messages.
type Badge = (i64, i64);

/// The user's list (ids) and badge, and what SQL reads from the table, in one snapshot.
fn list_and_table(db: &mut Client, user: &str) -> Result<(Ids, Ids, Badge, Badge), postgres::Error> {
    let mut tx = db.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start()?;
    let ids = |rows: Vec<postgres::Row>| rows.iter().map(|row| row.get::<_, i64>(0)).collect::<Ids>();
    let listed = ids(tx.query("SELECT id FROM conversation_list($1, NULL, NULL, 1000)", &[&user])?);
    let stored = ids(tx.query("SELECT id FROM conversation WHERE uid = $1 AND NOT hidden", &[&user])?);
    let badge = tx
        .query_one("SELECT unread_count, conversations FROM conversation_unread($1, NULL)", &[&user])
        .map(|row| (row.get(0), row.get(1)))?;
    let counted = tx
        .query_one(
            "SELECT coalesce(sum(unread_count), 0)::int8, count(*) FROM conversation WHERE uid = $1 AND unread_count > 0 AND NOT hidden",
            &[&user],
        )
        .map(|row| (row.get(0), row.get(1)))?;
    tx.commit()?;
    Ok((listed, stored, badge, counted))
}

/// One client's calls until `stop`: listers list, sync and read the badge; writers send messages,
/// read, and insert rows as an application would.
fn traffic(client: usize, dsn: &str, run: &str, users: &[String], stop: &AtomicBool, errors: &Mutex<Errors>, calls: &Mutex<usize>) {
    let mut db = Client::connect(dsn, NoTls).expect("connect");
    let mut positions: Vec<Option<String>> = vec![None; users.len()];
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let u = (i * 7 + client) % users.len();
        let (user, channel) = (&users[u], format!("{run}-g{}", (i * 13 + client) % CHANNELS));
        let result = if client.is_multiple_of(2) {
            match i % 3 {
                0 => db.query("SELECT count(*) FROM conversation_list($1, NULL, NULL, 20)", &[user]).map(drop),
                1 => db.query("SELECT unread_count FROM conversation_unread($1, NULL)", &[user]).map(drop),
                _ => db.query("SELECT position FROM conversation_list($1, NULL, $2, 50)", &[user, &positions[u]]).map(|rows| {
                    if let Some(last) = rows.last() {
                        positions[u] = Some(last.get(0));
                    }
                }),
            }
        } else {
            match i % 3 {
                0 => db
                    .query(
                        "SELECT conversation_message_arrived($2, 1, ARRAY[$1, 'sender'], 2 + (extract(epoch FROM clock_timestamp()) * 1000)::bigint, 'sender')",
                        &[user, &channel],
                    )
                    .map(drop),
                1 => db
                    .query(
                        "SELECT conversation_mark_read($1, $2, 1, greatest(1, (SELECT c.last_msg_seq FROM conversation AS c
                                                                            WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = 1)))",
                        &[user, &channel],
                    )
                    .map(drop),
                _ => db
                    .query(
                        "INSERT INTO conversation (uid, channel_id, channel_type) VALUES ($1, $2 || '-app', 1) ON CONFLICT DO NOTHING",
                        &[user, &format!("{channel}-{i}")],
                    )
                    .map(drop),
            }
        };
        *calls.lock().unwrap() += 1;
        if let Err(error) = result {
            let code = match error.code() {
                Some(code) => format!("{}: {}", code.code(), error.as_db_error().map_or(String::new(), |e| e.message().to_string())),
                None => format!("lost connection: {error}"),
            };
            *errors.lock().unwrap().entry(code).or_default() += 1;
            if db.is_closed() {
                match Client::connect(dsn, NoTls) {
                    Ok(again) => db = again,
                    Err(_) => return,
                }
            }
        }
    }
}
