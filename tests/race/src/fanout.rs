//! Fan-out race: every client asks for the conversations of the same fresh channel's members at
//! the same instant, in one batch, each listing the members in its own order (forward, reversed,
//! rotated). Claims of get_or_create_conversations:
//!
//! - no deadlock: not one 40P01; under READ COMMITTED no error at all, under REPEATABLE READ /
//!   SERIALIZABLE only 40001, and the retry of the whole transaction succeeds;
//! - exactly one row per key, and every client got every key, at its own input position, with
//!   the id the table holds.
//!
//! `--naive` runs the idiom the batch replaces, a multi-row INSERT ... ON CONFLICT DO NOTHING in
//! the caller's order followed by a SELECT, and shows the deadlocks this test is there to catch.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;

use postgres::{Client, IsolationLevel, NoTls};

use crate::retry::Tally;
use crate::{at_levels, Options, LEVELS};

const ROUNDS: usize = 5;

pub fn races(options: &Options) -> (usize, usize) {
    at_levels(&LEVELS, |name, level| (0..ROUNDS).flat_map(|round| race(options, name, level, round)).collect())
}

/// The members in client `client`'s order.
fn order_of(members: &[String], client: usize) -> Vec<String> {
    let mut ordered = members.to_vec();
    match client % 3 {
        0 => {}
        1 => ordered.reverse(),
        _ => ordered.rotate_left((client * 7) % members.len().max(1)),
    }
    ordered
}

struct Seen {
    /// uid -> id, as this client was given them.
    ids: HashMap<String, i64>,
    tally: Tally,
}

fn race(options: &Options, level_name: &str, level: IsolationLevel, round: usize) -> Vec<String> {
    let channel = format!("fanout-{}-{}-{round}", std::process::id(), level_name.replace(' ', "-"));
    let members: Vec<String> = (0..options.keys).map(|m| format!("member{m}")).collect();
    let barrier = Arc::new(Barrier::new(options.clients));
    let handles: Vec<_> = (0..options.clients)
        .map(|client| {
            let (barrier, dsn, channel, naive) = (barrier.clone(), options.dsn.clone(), channel.clone(), options.naive);
            let uids = order_of(&members, client);
            thread::spawn(move || {
                let mut db = Client::connect(&dsn, NoTls).expect("connect");
                let mut seen = Seen { ids: HashMap::new(), tally: Tally::default() };
                barrier.wait();
                // A deadlock is what this test is there to catch: only 40001 is retried.
                let what = format!("client {client}");
                if let Some(rows) = seen.tally.retried(&what, || fan_out(&mut db, level, naive, &channel, &uids)) {
                    check_rows(&uids, &rows, naive, &mut seen);
                }
                seen
            })
        })
        .collect();
    let seen: Vec<Seen> = handles.into_iter().map(|h| h.join().expect("client thread panicked")).collect();
    check(options, level, &channel, &members, seen)
}

/// One client's call: (input_position, id, uid) rows.
fn fan_out(
    db: &mut Client,
    level: IsolationLevel,
    naive: bool,
    channel: &str,
    uids: &[String],
) -> Result<Vec<(i32, i64, String)>, postgres::Error> {
    let mut tx = db.build_transaction().isolation_level(level).start()?;
    let rows = if naive {
        tx.execute(
            "INSERT INTO conversation (uid, channel_id, channel_type)
             SELECT m.uid, $1, 2 FROM unnest($2::text[]) WITH ORDINALITY AS m(uid, n) ORDER BY m.n
             ON CONFLICT DO NOTHING",
            &[&channel, &uids],
        )?;
        tx.query("SELECT 0, id, uid FROM conversation WHERE channel_id = $1 AND channel_type = 2 AND uid = ANY ($2)", &[&channel, &uids])?
    } else {
        tx.query("SELECT input_position, id, uid FROM get_or_create_conversations($1, 2, $2)", &[&channel, &uids])?
    };
    tx.commit()?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

fn check_rows(uids: &[String], rows: &[(i32, i64, String)], naive: bool, seen: &mut Seen) {
    if rows.len() != uids.len() {
        seen.tally.problems.push(format!("{} rows for {} members", rows.len(), uids.len()));
    }
    for (position, id, uid) in rows {
        // The naive idiom has no positions to check.
        if !naive && uids.get((*position - 1) as usize) != Some(uid) {
            seen.tally.problems.push(format!("position {position} came back as {uid}"));
        }
        seen.ids.insert(uid.clone(), *id);
    }
}

fn check(options: &Options, level: IsolationLevel, channel: &str, members: &[String], seen: Vec<Seen>) -> Vec<String> {
    let mut tally = Tally::default();
    for client in &seen {
        tally.absorb(&client.tally);
    }
    let mut problems = tally.problems_at(level);
    let mut db = Client::connect(&options.dsn, NoTls).expect("connect");
    let table: HashMap<String, Vec<i64>> = db
        .query("SELECT uid, array_agg(id) FROM conversation WHERE channel_id = $1 GROUP BY uid", &[&channel])
        .expect("read the table")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for uid in members {
        match table.get(uid).map(Vec::as_slice) {
            Some([id]) => {
                let disagreeing = seen.iter().filter(|s| s.ids.get(uid).is_some_and(|got| got != id)).count();
                if disagreeing > 0 {
                    problems.push(format!("{uid}: {disagreeing} clients got another id than the table's {id}"));
                }
            }
            other => problems.push(format!("{uid}: the table holds ids {other:?}")),
        }
    }
    println!("{channel}: {} clients x {} members, retried errors {:?}", options.clients, members.len(), tally.errors);
    problems
}
