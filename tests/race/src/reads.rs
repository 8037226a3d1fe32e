//! Read-position race: many clients (a user's devices) report random read positions for one
//! conversation at once. Claims of conversation_mark_read:
//!
//! - the position ends at the greatest one reported, and the unread count at last_msg_seq minus it;
//! - no reply shows a position behind the one its caller reported, and one client's replies never
//!   go back;
//! - READ COMMITTED: no error at all; REPEATABLE READ / SERIALIZABLE: only 40001, retried.

use std::sync::{Arc, Barrier};
use std::thread;

use postgres::{Client, IsolationLevel, NoTls};

use crate::retry::{Random, Tally};
use crate::{at_levels, Options, LEVELS};

const LAST_MSG_SEQ: i64 = 100_000;

pub fn races(options: &Options) -> (usize, usize) {
    at_levels(&LEVELS, |name, level| race(options, name, level))
}

/// Reproducible positions, `count` of them, for the client of `seed`.
fn positions(seed: u64, count: usize) -> Vec<i64> {
    let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..count).map(|_| 1 + random.below(LAST_MSG_SEQ as usize - 1) as i64).collect()
}

struct Seen {
    reported: Vec<i64>,
    tally: Tally,
}

fn race(options: &Options, level_name: &str, level: IsolationLevel) -> Vec<String> {
    let channel = format!("reads-{}-{}", std::process::id(), level_name.replace(' ', "-"));
    let mut db = Client::connect(&options.dsn, NoTls).expect("connect");
    // A conversation with LAST_MSG_SEQ messages, all unread.
    db.execute("SELECT conversation_mark_read('reader', $1, 2, 1)", &[&channel]).expect("create");
    db.execute(
        "UPDATE conversation SET readed_to_msg_seq = 0, last_msg_seq = $2::bigint, unread_count = $2::bigint::integer
         WHERE uid = 'reader' AND channel_id = $1 AND channel_type = 2",
        &[&channel, &LAST_MSG_SEQ],
    )
    .expect("set up");

    let barrier = Arc::new(Barrier::new(options.clients));
    let handles: Vec<_> = (0..options.clients)
        .map(|client| {
            let (barrier, dsn, channel) = (barrier.clone(), options.dsn.clone(), channel.clone());
            let wanted = positions(client as u64 + 1, options.keys);
            thread::spawn(move || {
                let mut db = Client::connect(&dsn, NoTls).expect("connect");
                let statement = db.prepare("SELECT readed_to_msg_seq FROM conversation_mark_read('reader', $1, 2, $2)").expect("prepare");
                let mut seen = Seen { reported: Vec::new(), tally: Tally::default() };
                let mut last_reply = 0;
                barrier.wait();
                for position in wanted {
                    let what = format!("position {position}");
                    let call = |tx: &mut postgres::Transaction| tx.query_one(&statement, &[&channel, &position]);
                    let Some(row) = seen.tally.in_transaction(&mut db, level, &what, call) else { continue };
                    let read: i64 = row.get(0);
                    seen.reported.push(position);
                    if read < position {
                        seen.tally.problems.push(format!("reported {position}, the reply says {read}"));
                    }
                    if read < last_reply {
                        seen.tally.problems.push(format!("a reply went back from {last_reply} to {read}"));
                    }
                    last_reply = read;
                }
                seen
            })
        })
        .collect();
    let seen: Vec<Seen> = handles.into_iter().map(|h| h.join().expect("client thread panicked")).collect();

    let mut tally = Tally::default();
    for client in &seen {
        tally.absorb(&client.tally);
    }
    let mut problems = tally.problems_at(level);
    let greatest = seen.iter().flat_map(|s| s.reported.iter().copied()).max().unwrap_or(0);
    let row = db
        .query_one(
            "SELECT readed_to_msg_seq, unread_count, count(*) OVER () FROM conversation
             WHERE uid = 'reader' AND channel_id = $1 AND channel_type = 2",
            &[&channel],
        )
        .expect("read the row");
    let (read, unread, rows): (i64, i32, i64) = (row.get(0), row.get(1), row.get(2));
    if rows != 1 || read != greatest || i64::from(unread) != LAST_MSG_SEQ - greatest {
        problems.push(format!(
            "ended at read {read} unread {unread} ({rows} rows); expected read {greatest} unread {}",
            LAST_MSG_SEQ - greatest
        ));
    }
    println!(
        "{channel}: {} clients x {} reads, ended at read {read} unread {unread}, retried errors {:?}",
        options.clients, options.keys, tally.errors
    );
    problems
}
