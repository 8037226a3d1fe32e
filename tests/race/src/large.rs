//! Large-channel race: one channel gets its messages in order (seqs 1, 2, 3, ..., senders taking
//! turns, every third a system message; at least 150, and on until the mode changed 10 times)
//! while each member's devices report read positions they saw, and the channel is made large and
//! per member again over and over (and, half of the time, made large by a message naming at least
//! pg_conversation.large_channel_members members). Claims:
//!
//! - no message, read or mode change is lost or counted twice: each member ends where a
//!   recomputation from the log puts it: `last_msg_seq` the last seq, `readed_to_msg_seq` the
//!   greatest of its reads and of the messages it sent, `unread_count` the messages after that;
//! - the member reads the same from a single-row function, its list and its badge, in the mode
//!   the race ended in and after one more change;
//! - no deadlock, ever: READ COMMITTED has no error at all, REPEATABLE READ / SERIALIZABLE only
//!   40001, and the retried call then counts once. (Mode changes run at READ COMMITTED, as the
//!   README says to call them.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use postgres::{Client, IsolationLevel, NoTls};

use crate::retry::Tally;
use crate::{at_levels, on_citus, Options, LEVELS};

/// At least this many messages, and more until the channel changed mode this often.
const MESSAGES: i64 = 150;
const CHANGES: i64 = 10;

pub fn races(options: &Options) -> (usize, usize) {
    // Citus runs no SERIALIZABLE transaction across nodes: a worker's serialization failure at
    // commit comes back as XX000 ("could not commit transaction for shard").
    let levels = if on_citus(&options.dsn) { &LEVELS[..2] } else { &LEVELS[..] };
    at_levels(levels, |name, level| race(options, name, level))
}

/// The sender of message `seq`: members take turns, every third message is a system message.
fn sender(members: &[String], seq: i64) -> Option<String> {
    (seq % 3 != 0).then(|| members[(seq as usize) % members.len()].clone())
}

fn race(options: &Options, level_name: &str, level: IsolationLevel) -> Vec<String> {
    let channel = format!("large-{}-{}", std::process::id(), level_name.replace(' ', "-"));
    let members: Vec<String> = (0..options.keys).map(|m| format!("{channel}-member{m}")).collect();
    let done = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicI64::new(0));
    // Readers, plus the sender of messages and the changer of modes.
    let barrier = Arc::new(Barrier::new(options.clients + 2));
    let mut db = Client::connect(&options.dsn, NoTls).expect("connect");
    db.execute("SELECT count(*) FROM get_or_create_conversations($1, 2, $2)", &[&channel, &members]).expect("the channel's members");

    let messages = {
        let (dsn, channel, members, done, changes, barrier) =
            (options.dsn.clone(), channel.clone(), members.clone(), done.clone(), changes.clone(), barrier.clone());
        thread::spawn(move || {
            let mut db = Client::connect(&dsn, NoTls).expect("connect");
            let statement = db.prepare("SELECT conversation_message_arrived($1, 2, $2, $3, $4)").expect("prepare");
            let mut tally = Tally::default();
            barrier.wait();
            let mut seq = 0;
            while seq < MESSAGES || changes.load(Ordering::Relaxed) < CHANGES {
                seq += 1;
                // Twenty messages in turn with and without pg_conversation.large_channel_members
                // at the member count: with it, a message makes the channel large itself.
                if seq % 20 == 1 {
                    let at = if seq % 40 == 1 { members.len() } else { 0 };
                    db.batch_execute(&format!("SET pg_conversation.large_channel_members = {at}")).expect("the setting");
                }
                let from = sender(&members, seq);
                let what = format!("message {seq}");
                tally.in_transaction(&mut db, level, &what, |tx| tx.query_one(&statement, &[&channel, &members, &seq, &from]).map(|_| ()));
            }
            done.store(true, Ordering::Relaxed);
            (tally, seq)
        })
    };
    let modes = {
        let (dsn, channel, members, done, changes, barrier) =
            (options.dsn.clone(), channel.clone(), members.clone(), done.clone(), changes.clone(), barrier.clone());
        thread::spawn(move || {
            let mut db = Client::connect(&dsn, NoTls).expect("connect");
            let large = db.prepare("SELECT conversation_channel_make_large($1, 2, $2)").expect("prepare");
            let per_member = db.prepare("SELECT conversation_channel_make_per_member($1, 2)").expect("prepare");
            let mut tally = Tally::default();
            barrier.wait();
            let mut make_large = true;
            while !done.load(Ordering::Relaxed) {
                // At READ COMMITTED whatever the level of the rest (README: a change waits for
                // the messages in flight, and a snapshot taken before them conflicts with them).
                let changed = tally.in_transaction(&mut db, IsolationLevel::ReadCommitted, "a mode change", |tx| {
                    let row =
                        if make_large { tx.query_one(&large, &[&channel, &members])? } else { tx.query_one(&per_member, &[&channel])? };
                    Ok(row.get::<_, i64>(0))
                });
                if changed.is_some() {
                    changes.fetch_add(1, Ordering::Relaxed);
                    make_large = !make_large;
                }
                thread::sleep(std::time::Duration::from_millis(5));
            }
            tally
        })
    };
    // Each reader reads for members of its own, a position it saw (the member's last message, or
    // a little behind it, as a device that has not caught up).
    let readers: Vec<_> = (0..options.clients)
        .map(|client| {
            let (dsn, channel, members, done, barrier) =
                (options.dsn.clone(), channel.clone(), members.clone(), done.clone(), barrier.clone());
            let clients = options.clients;
            thread::spawn(move || {
                let mut db = Client::connect(&dsn, NoTls).expect("connect");
                let seen = db.prepare("SELECT last_msg_seq FROM find_conversation($1, $2, 2)").expect("prepare");
                let read = db.prepare("SELECT readed_to_msg_seq FROM conversation_mark_read($1, $2, 2, $3)").expect("prepare");
                let mut tally = Tally::default();
                let mut greatest = BTreeMap::<String, i64>::new();
                barrier.wait();
                let mut turn = 0usize;
                while !done.load(Ordering::Relaxed) {
                    let uid = &members[(client + turn * clients) % members.len()];
                    turn += 1;
                    let Some(last) = tally.in_transaction(&mut db, level, "a look", |tx| {
                        tx.query_one(&seen, &[uid, &channel]).map(|row| row.get::<_, i64>(0))
                    }) else {
                        continue;
                    };
                    let position = last - (turn % 3) as i64;
                    if position < 1 {
                        continue;
                    }
                    let what = format!("{uid} reading to {position}");
                    if tally
                        .in_transaction(&mut db, level, &what, |tx| tx.query_one(&read, &[uid, &channel, &position]).map(|_| ()))
                        .is_some()
                    {
                        let entry = greatest.entry(uid.clone()).or_default();
                        *entry = (*entry).max(position);
                    }
                }
                (tally, greatest)
            })
        })
        .collect();

    let (mut tally, last) = messages.join().expect("the sender panicked");
    tally.absorb(&modes.join().expect("the mode changer panicked"));
    // The log: each member's greatest read, and the greatest message it sent.
    let mut read_to = BTreeMap::<String, i64>::new();
    for reader in readers {
        let (reader_tally, greatest) = reader.join().expect("a reader panicked");
        tally.absorb(&reader_tally);
        for (uid, position) in greatest {
            let entry = read_to.entry(uid).or_default();
            *entry = (*entry).max(position);
        }
    }
    for seq in 1..=last {
        if let Some(uid) = sender(&members, seq) {
            let entry = read_to.entry(uid).or_default();
            *entry = (*entry).max(seq);
        }
    }
    let mut problems = tally.problems_at(level);
    let changes = changes.load(Ordering::Relaxed);
    // In the mode the race ended in, then after one more change.
    let ended_large: bool =
        db.query_one("SELECT EXISTS (SELECT 1 FROM conversation_channel WHERE channel_id = $1)", &[&channel]).expect("the mode").get(0);
    for (round, large) in [ended_large, !ended_large].into_iter().enumerate() {
        if round == 1 {
            if large {
                db.execute("SELECT conversation_channel_make_large($1, 2, $2)", &[&channel, &members]).expect("made large");
            } else {
                db.execute("SELECT conversation_channel_make_per_member($1, 2)", &[&channel]).expect("made per member");
            }
        }
        let mode = if large { "large" } else { "per member" };
        for uid in &members {
            let read = read_to.get(uid).copied().unwrap_or(0);
            let expected = (last, read, (last - read) as i32, large);
            // Each function called on its own: on Citus, run on the node of the member's shard.
            let row = db
                .query_one(
                    "SELECT last_msg_seq, readed_to_msg_seq, unread_count, large FROM find_conversation($1, $2, 2)",
                    &[uid, &channel],
                )
                .expect("a member's row");
            let got = (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i32>(2), row.get::<_, bool>(3));
            if got != expected {
                problems.push(format!("{mode}: {uid} reads (last, read, unread, large) {got:?}, the log says {expected:?}"));
            }
            let listed = db
                .query("SELECT channel_id, unread_count, last_msg_seq FROM conversation_list($1)", &[uid])
                .expect("a member's list")
                .into_iter()
                .find(|listed| listed.get::<_, String>(0) == channel);
            let (listed_unread, listed_last) =
                listed.map_or((None, None), |listed| (Some(listed.get::<_, i32>(1)), Some(listed.get::<_, i64>(2))));
            let badge: i64 = db.query_one("SELECT unread_count FROM conversation_unread($1)", &[uid]).expect("a member's badge").get(0);
            if (listed_unread, listed_last, badge) != (Some(got.2), Some(got.0), i64::from(got.2)) {
                problems.push(format!(
                    "{mode}: {uid} is listed with {listed_unread:?} unread at {listed_last:?} and badged {badge}, but reads {got:?}"
                ));
            }
        }
    }
    println!(
        "{channel}: {last} messages to {} members, {} readers, {changes} mode changes, retried errors {:?}",
        options.keys, options.clients, tally.errors
    );
    problems
}
