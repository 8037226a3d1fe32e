//! Message race: many clients deliver messages to one channel at once, with message seqs from one
//! counter, so that they arrive out of order. Claims of conversation_message_arrived:
//!
//! - every member ends at the greatest seq delivered (last_msg_seq), whatever the order;
//! - each call's count of advanced conversations is exact: over all calls it adds up to the unread
//!   counts of the members (system messages, no sender: every advance is one unread);
//! - no deadlock, ever: READ COMMITTED has no error at all, REPEATABLE READ / SERIALIZABLE only
//!   40001, and the retried message then counts once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls};

use crate::{at_levels, Options, LEVELS};

const MESSAGES_PER_CLIENT: usize = 20;
const MAX_ATTEMPTS: usize = 100;

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
                let (mut advanced, mut errors, mut problems) = (0i64, BTreeMap::<String, usize>::new(), Vec::new());
                barrier.wait();
                for _ in 0..MESSAGES_PER_CLIENT {
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    for attempt in 1..=MAX_ATTEMPTS {
                        let result = db.build_transaction().isolation_level(level).start().and_then(|mut tx| {
                            let count: i32 = tx.query_one(&statement, &[&channel, &members, &seq])?.get(0);
                            tx.commit()?;
                            Ok(count)
                        });
                        match result {
                            Ok(count) => {
                                advanced += i64::from(count);
                                break;
                            }
                            Err(error) => {
                                let code = error.code().map_or_else(|| format!("no SQLSTATE: {error}"), |c| c.code().to_string());
                                *errors.entry(code).or_default() += 1;
                                if error.code() != Some(&SqlState::T_R_SERIALIZATION_FAILURE) || attempt == MAX_ATTEMPTS {
                                    problems.push(format!("message {seq} gave up: {error}"));
                                    break;
                                }
                            }
                        }
                    }
                }
                (advanced, errors, problems)
            })
        })
        .collect();
    let mut problems = Vec::new();
    let mut advanced = 0;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for handle in handles {
        let (count, client_errors, client_problems) = handle.join().expect("client thread panicked");
        advanced += count;
        problems.extend(client_problems);
        for (code, n) in client_errors {
            *errors.entry(code).or_default() += n;
        }
    }
    let allowed: &[&str] = if matches!(level, IsolationLevel::ReadCommitted) { &[] } else { &["40001"] };
    for (code, n) in &errors {
        if !allowed.contains(&code.as_str()) {
            problems.push(format!("{n} calls failed with {code}"));
        }
    }
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
        "{channel}: {} clients x {MESSAGES_PER_CLIENT} messages to {} members: {advanced} advances, retried errors {errors:?}",
        options.clients, options.keys
    );
    problems
}
