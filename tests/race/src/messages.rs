//! Message race: many clients deliver messages to one channel at once, with message seqs from one
//! counter, so that they arrive out of order. Claims of conversation_message_arrived:
//!
//! - every member ends at the greatest seq delivered (last_msg_seq), whatever the order;
//! - each call's count of advanced conversations is exact: over all calls it adds up to the unread
//!   counts of the members (system messages, no sender: every advance is one unread);
//! - no deadlock, ever: READ COMMITTED has no error at all, REPEATABLE READ / SERIALIZABLE only
//!   40001, and the retried message then counts once.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use postgres::{Client, IsolationLevel, NoTls};

use crate::retry::Tally;
use crate::{at_levels, Options, LEVELS};

const MESSAGES_PER_CLIENT: usize = 20;

pub fn races(options: &Options) -> (usize, usize) {
    at_levels(&LEVELS, |name, level| race(options, name, level))
}

fn race(options: &Options, level_name: &str, level: IsolationLevel) -> Vec<String> {
    let channel = format!("messages-{}-{}", std::process::id(), level_name.replace(' ', "-"));
    let members: Vec<String> = (0..options.keys).map(|m| format!("member{m}")).collect();
    let next_seq = Arc::new(AtomicI64::new(1));
    let barrier = Arc::new(Barrier::new(options.clients));
    let handles: Vec<_> = (0..options.clients)
        .map(|_| {
            let (dsn, channel, members, next_seq, barrier) =
                (options.dsn.clone(), channel.clone(), members.clone(), next_seq.clone(), barrier.clone());
            thread::spawn(move || {
                let mut db = Client::connect(&dsn, NoTls).expect("connect");
                let statement = db.prepare("SELECT conversation_message_arrived($1, 2, $2, $3, NULL)").expect("prepare");
                let (mut advanced, mut tally) = (0i64, Tally::default());
                barrier.wait();
                for _ in 0..MESSAGES_PER_CLIENT {
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    let what = format!("message {seq}");
                    let call = |tx: &mut postgres::Transaction| tx.query_one(&statement, &[&channel, &members, &seq]);
                    if let Some(row) = tally.in_transaction(&mut db, level, &what, call) {
                        advanced += i64::from(row.get::<_, i32>(0));
                    }
                }
                (advanced, tally)
            })
        })
        .collect();
    let (mut advanced, mut tally) = (0, Tally::default());
    for handle in handles {
        let (count, client) = handle.join().expect("client thread panicked");
        advanced += count;
        tally.absorb(&client);
    }
    let mut problems = tally.problems_at(level);
    let last_seq = next_seq.load(Ordering::Relaxed) - 1;
    let mut db = Client::connect(&options.dsn, NoTls).expect("connect");
    let row = db
        .query_one(
            "SELECT count(*), coalesce(sum(unread_count), 0)::bigint, min(last_msg_seq), max(last_msg_seq)
             FROM conversation WHERE channel_id = $1 AND channel_type = 2",
            &[&channel],
        )
        .expect("the channel's conversations");
    let (rows, unread, lowest, highest): (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    if rows != options.keys as i64 {
        problems.push(format!("{rows} conversations for {} members", options.keys));
    }
    if lowest != last_seq || highest != last_seq {
        problems.push(format!("members end between seqs {lowest} and {highest}, not at {last_seq}"));
    }
    if unread != advanced {
        problems.push(format!("the calls advanced {advanced} conversations, the members hold {unread} unread"));
    }
    println!(
        "{channel}: {} clients x {MESSAGES_PER_CLIENT} messages to {} members: {advanced} advances, retried errors {:?}",
        options.clients, options.keys, tally.errors
    );
    problems
}
