//! DDL under traffic: while `--clients` connections call every function in a loop (hits, misses,
//! batches, messages, reads, lookups), one more connection changes the table the way DBAs do:
//!
//! - `REINDEX TABLE CONCURRENTLY conversation`, which swaps every index for a new one;
//! - the primary key re-created, in one transaction and online (a unique index built
//!   CONCURRENTLY, then `DROP CONSTRAINT ..., ADD CONSTRAINT ... PRIMARY KEY USING INDEX`);
//! - a column added and dropped again.
//!
//! Claims: not one error in any caller (the functions find the table under a lock, so no DDL that
//! committed can leave them an OID that is gone), one row per key and one id per key afterwards.
//!
//! Then `DROP EXTENSION` / `CREATE EXTENSION` in a loop under the same traffic: calls may find no
//! function (42883), a query planned before the drop no return type (42704, raised by PostgreSQL
//! before the function runs), no table (55000), or be ended by the deadlock detector (40P01), and
//! nothing else: never an internal error (XX000), never a lost connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use crate::{report, Options};

const ROUNDS: usize = 6;

/// SQLSTATE (or "lost connection: ...") -> how many calls ended in it.
type Errors = BTreeMap<String, usize>;

/// A change of the table made under traffic, in round N.
type Ddl = fn(&mut Client, usize);

pub fn races(options: &Options) -> (usize, usize) {
    let mut passed = 0;
    let scenarios: [(&str, Ddl); 3] =
        [("REINDEX CONCURRENTLY", reindex), ("primary key re-created", recreate_key), ("column added and dropped", add_drop_column)];
    for (name, ddl) in scenarios {
        let errors = under_traffic(options, name, ddl);
        let mut problems: Vec<String> = errors.iter().map(|(code, n)| format!("{n} calls failed with {code}")).collect();
        problems.extend(one_row_and_id_per_key(options));
        if report(name, &problems) {
            passed += 1;
        }
    }
    // DROP EXTENSION locks the sequence, then the table; an INSERT holds the table and wants the
    // sequence: PostgreSQL's deadlock detector ends one of them (40P01), as for any two such
    // transactions. The DDL retries; a caller may be the one ended.
    let errors = under_traffic(options, "DROP/CREATE EXTENSION", |db, _| loop {
        match db.batch_execute("BEGIN; DROP EXTENSION pg_conversation; CREATE EXTENSION pg_conversation; COMMIT") {
            Ok(()) => break,
            Err(error) if error.code() == Some(&postgres::error::SqlState::T_R_DEADLOCK_DETECTED) => {
                db.batch_execute("ROLLBACK").expect("rollback");
            }
            Err(error) => panic!("drop and create: {error}"),
        }
    });
    let problems: Vec<String> = errors
        .iter()
        .filter(|(code, _)| !["42883", "42704", "55000", "40P01"].contains(&code.as_str()))
        .map(|(code, n)| format!("{n} calls failed with {code}"))
        .collect();
    println!("DROP/CREATE EXTENSION: calls that failed, by SQLSTATE: {errors:?}");
    if report("DROP/CREATE EXTENSION", &problems) {
        passed += 1;
    }
    (passed, 4 - passed)
}

fn reindex(db: &mut Client, _round: usize) {
    db.batch_execute("REINDEX TABLE CONCURRENTLY conversation").expect("reindex");
}

fn recreate_key(db: &mut Client, round: usize) {
    let name = format!("conversation_key_{round}");
    db.batch_execute(&format!("CREATE UNIQUE INDEX CONCURRENTLY {name} ON conversation (uid, channel_id, channel_type)"))
        .expect("build the new key index");
    let old: String = db
        .query_one("SELECT conname::text FROM pg_constraint WHERE conrelid = 'conversation'::regclass AND contype = 'p'", &[])
        .expect("the primary key")
        .get(0);
    db.batch_execute(&format!("ALTER TABLE conversation DROP CONSTRAINT {old}, ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}"))
        .expect("swap the primary key");
}

fn add_drop_column(db: &mut Client, round: usize) {
    db.batch_execute(&format!("ALTER TABLE conversation ADD COLUMN extra_{round} jsonb")).expect("add");
    thread::sleep(Duration::from_millis(100));
    db.batch_execute(&format!("ALTER TABLE conversation DROP COLUMN extra_{round}")).expect("drop");
}

/// Runs `ddl` ROUNDS times while the clients call every function; returns their errors.
fn under_traffic(options: &Options, name: &str, ddl: impl Fn(&mut Client, usize)) -> Errors {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Errors::new()));
    let calls = Arc::new(Mutex::new(0usize));
    let run = format!("ddl-{}-{}", std::process::id(), name.replace(|c: char| !c.is_alphanumeric(), "-"));
    let clients: Vec<_> = (0..options.clients)
        .map(|client| {
            let (stop, errors, calls, dsn, run) = (stop.clone(), errors.clone(), calls.clone(), options.dsn.clone(), run.clone());
            thread::spawn(move || {
                let mut db = Client::connect(&dsn, NoTls).expect("connect");
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (uid, channel) = (format!("{run}-u{client}-{}", i % 50), format!("{run}-g{}", i % 7));
                    let statement = match i % 6 {
                        0 => "SELECT id FROM get_or_create_conversation($1, $2, 1)",
                        1 => "SELECT id FROM find_conversation($1, $2, 1)",
                        2 => "SELECT count(*) FROM get_or_create_conversations($2, 1, ARRAY[$1, $1 || '-x'])",
                        3 => "SELECT conversation_message_arrived($2, 1, ARRAY[$1], 1 + (extract(epoch FROM clock_timestamp()) * 1000)::bigint, NULL)",
                        4 => "SELECT readed_to_msg_seq FROM conversation_mark_read($1, $2, 1, 1)",
                        _ => "SELECT count(*) FROM get_or_create_conversations(format('[{\"uid\": \"%s\", \"channel_id\": \"%s\", \"channel_type\": 1}]', $1::text, $2::text))",
                    };
                    *calls.lock().unwrap() += 1;
                    if let Err(error) = db.query(statement, &[&uid, &channel]) {
                        let code = match error.code() {
                            Some(code) => code.code().to_string(),
                            None => format!("lost connection: {error}"),
                        };
                        *errors.lock().unwrap().entry(code).or_default() += 1;
                        if db.is_closed() {
                            match Client::connect(&dsn, NoTls) {
                                Ok(again) => db = again,
                                Err(_) => return,
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut db = Client::connect(&options.dsn, NoTls).expect("connect");
    let started = Instant::now();
    thread::sleep(Duration::from_millis(300)); // traffic first
    for round in 0..ROUNDS {
        ddl(&mut db, round);
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    let errors = errors.lock().unwrap().clone();
    println!(
        "{name}: {} calls from {} clients over {:.1} s, {ROUNDS} rounds of DDL; failed calls {errors:?}",
        calls.lock().unwrap(),
        options.clients,
        started.elapsed().as_secs_f64()
    );
    errors
}

fn one_row_and_id_per_key(options: &Options) -> Vec<String> {
    let mut db = Client::connect(&options.dsn, NoTls).expect("connect");
    let row = db
        .query_one("SELECT count(*), count(DISTINCT (uid, channel_id, channel_type)), count(DISTINCT id) FROM conversation", &[])
        .expect("count");
    let (rows, keys, ids): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if rows == keys && keys == ids {
        Vec::new()
    } else {
        vec![format!("{rows} rows, {keys} keys, {ids} ids")]
    }
}
