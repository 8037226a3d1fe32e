//! Race test: many client connections create the same fresh conversations at the same instant,
//! at each isolation level, and every claim of get_or_create_conversation is checked:
//!
//! - exactly one row per key in the table, with the id everyone was given;
//! - every caller got an id (never NULL, never a missing row);
//! - READ COMMITTED: no error at all; REPEATABLE READ / SERIALIZABLE: only 40001, and the
//!   caller's retry of the whole transaction succeeds.
//!
//! For every key, all clients wait at a barrier and then call at once, so each key is created
//! under full contention. `--naive` runs the same race against a PL/pgSQL select-then-insert on a
//! table without a unique index, to show that this test catches duplicates when they happen.
//!
//! Other modes race the rest of the extension the same way:
//! - `--mode fanout` (fanout.rs): batches over the same fresh keys, listed in different orders;
//! - `--mode reads` (reads.rs): many devices reporting read positions of one conversation;
//! - `--mode messages` (messages.rs): messages delivered to one channel at once, out of order;
//! - `--mode large` (large.rs): a channel made large and per member again while messages and
//!   reads arrive, every member checked against a recomputation from the log;
//! - `--mode sync` (sync.rs): clients syncing their lists while writers commit out of order;
//! - `--mode ddl` (ddl.rs): every function called while the table is reindexed, its primary key
//!   re-created, columns added and dropped, and the extension dropped and created again;
//! - `--mode memory` (memory.rs): the memory a backend takes to refuse a million keys, and inputs
//!   refused by their size alone (huge keys, fields, positions);
//! - `--mode index-rebuild` (index_rebuild.rs): a list index dropped and built again concurrently,
//!   failing and succeeding, while clients list and write.
//!
//! usage: race-test --dsn "host=... port=... user=... dbname=..." [--mode create|fanout|reads|messages|large|sync|ddl|memory|index-rebuild]
//!                  [--clients 32] [--keys 100] [--naive] [--prefix NAME] [--autocommit] [--standby DSN] [--failover]

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;

use postgres::{Client, IsolationLevel, NoTls};

use retry::Tally;

mod ddl;
mod fanout;
mod index_rebuild;
mod large;
mod memory;
mod messages;
mod reads;
mod retry;
mod sync;

pub struct Options {
    pub dsn: String,
    pub mode: String,
    pub clients: usize,
    pub keys: usize,
    pub naive: bool,
    /// Key names start with this instead of the process id: several processes (one per Citus
    /// node, say) then race on the same keys.
    pub prefix: Option<String>,
    /// Create and sync modes: each call in a transaction of its own, outside a transaction block
    /// (READ COMMITTED only). On Citus such calls are delegated to the node of the key's shard.
    pub autocommit: bool,
    /// Sync mode: a hot standby of --dsn; each client reads every other page there (a position
    /// carried between the servers), retrying what the standby refuses while it is behind (40001).
    pub standby: Option<String>,
    /// Sync mode with --standby: half-way through, the standby is promoted and everyone moves to
    /// it (a failover); clients whose positions it refuses (72000) list from the start.
    pub failover: bool,
}

pub const LEVELS: [(&str, IsolationLevel); 3] = [
    ("read committed", IsolationLevel::ReadCommitted),
    ("repeatable read", IsolationLevel::RepeatableRead),
    ("serializable", IsolationLevel::Serializable),
];

/// Whether the database of `dsn` is a Citus cluster's (the races that differ there ask).
pub fn on_citus(dsn: &str) -> bool {
    Client::connect(dsn, NoTls)
        .expect("connect")
        .query_one("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')", &[])
        .expect("the extensions")
        .get(0)
}

/// Runs `race` at each of `levels` and reports each: (passed, failed).
pub fn at_levels(levels: &[(&str, IsolationLevel)], race: impl Fn(&str, IsolationLevel) -> Vec<String>) -> (usize, usize) {
    let passed = levels.iter().filter(|&&(name, level)| report(name, &race(name, level))).count();
    (passed, levels.len() - passed)
}

/// Prints the problems of one race and returns whether there were none.
pub fn report(name: &str, problems: &[String]) -> bool {
    if problems.is_empty() {
        println!("ok: {name}");
    } else {
        for problem in problems {
            println!("FAILED: {name}: {problem}");
        }
    }
    problems.is_empty()
}

/// What one client saw: the id it got per key, and what its calls came to.
#[derive(Default)]
struct Seen {
    ids: HashMap<usize, Option<i64>>,
    tally: Tally,
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let (passed, failed) = match options.mode.as_str() {
        "create" => create_races(&options),
        "fanout" => fanout::races(&options),
        "reads" => reads::races(&options),
        "messages" => messages::races(&options),
        "large" => large::races(&options),
        "sync" => sync::races(&options),
        "ddl" => ddl::races(&options),
        "memory" => memory::check(&options),
        "index-rebuild" => index_rebuild::races(&options),
        other => {
            eprintln!("unknown mode {other}");
            return ExitCode::from(2);
        }
    };
    println!("race {}: {passed} passed, {failed} failed", options.mode);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn create_races(options: &Options) -> (usize, usize) {
    let function = if options.naive { install_naive(&options.dsn) } else { "get_or_create_conversation".to_string() };
    let levels: &[(&str, IsolationLevel)] = if options.autocommit { &LEVELS[..1] } else { &LEVELS };
    at_levels(levels, |name, level| race(options, &function, name, level))
}

/// Runs one race at `level` and returns what went wrong (nothing when all claims hold).
fn race(options: &Options, function: &str, level_name: &str, level: IsolationLevel) -> Vec<String> {
    let prefix = options.prefix.clone().unwrap_or_else(|| format!("race-{}", std::process::id()));
    let run = format!("{prefix}-{}", level_name.replace(' ', "-"));
    let key_of = |k: usize| {
        // Mix chat and CMD channels, and several conversations per user.
        let channel = if k.is_multiple_of(2) { format!("{run}-c{k}____cmd") } else { format!("{run}-c{k}") };
        (format!("{run}-u{}", k % 10), channel, (k % 3) as i32)
    };
    let barrier = Arc::new(Barrier::new(options.clients));
    let handles: Vec<_> = (0..options.clients)
        .map(|_| {
            let barrier = barrier.clone();
            let dsn = options.dsn.clone();
            let sql = format!("SELECT id FROM {function}($1, $2, $3)");
            let keys: Vec<_> = (0..options.keys).map(key_of).collect();
            let autocommit = options.autocommit;
            thread::spawn(move || {
                let mut client = Client::connect(&dsn, NoTls).expect("connect");
                let statement = client.prepare(&sql).expect("prepare");
                let mut seen = Seen::default();
                for (k, (uid, channel_id, channel_type)) in keys.iter().enumerate() {
                    barrier.wait();
                    let id = seen.tally.retried(&format!("key {k}"), || {
                        let row = if autocommit {
                            client.query_opt(&statement, &[uid, channel_id, channel_type])?
                        } else {
                            let mut tx = client.build_transaction().isolation_level(level).start()?;
                            let row = tx.query_opt(&statement, &[uid, channel_id, channel_type])?;
                            tx.commit()?;
                            row
                        };
                        Ok(row.and_then(|row| row.get::<_, Option<i64>>(0)))
                    });
                    if let Some(id) = id {
                        seen.ids.insert(k, id);
                    }
                }
                seen
            })
        })
        .collect();
    let seen: Vec<Seen> = handles.into_iter().map(|h| h.join().expect("client thread panicked")).collect();
    check(options, function, &run, level, &seen, key_of)
}

fn check(
    options: &Options,
    function: &str,
    run: &str,
    level: IsolationLevel,
    seen: &[Seen],
    key_of: impl Fn(usize) -> (String, String, i32),
) -> Vec<String> {
    let mut tally = Tally::default();
    for client in seen {
        tally.absorb(&client.tally);
    }
    let mut problems = tally.problems_at(level);
    let table = if options.naive { "race_naive.conversation" } else { "conversation" };
    let mut db = Client::connect(&options.dsn, NoTls).expect("connect");
    for k in 0..options.keys {
        let (uid, channel_id, channel_type) = key_of(k);
        let ids: Vec<Option<i64>> = seen.iter().filter_map(|s| s.ids.get(&k).copied()).collect();
        if ids.iter().any(Option::is_none) {
            problems.push(format!("key {k}: a caller got NULL"));
        }
        let mut distinct: Vec<i64> = ids.iter().flatten().copied().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let rows: Vec<i64> = db
            .query(
                &format!("SELECT id FROM {table} WHERE uid = $1 AND channel_id = $2 AND channel_type = $3"),
                &[&uid, &channel_id, &(channel_type as i16)],
            )
            .expect("count rows")
            .iter()
            .map(|row| row.get(0))
            .collect();
        if rows.len() != 1 {
            problems.push(format!("key {k}: {} rows in the table", rows.len()));
        }
        if distinct.len() != 1 || rows.first() != distinct.first() {
            problems.push(format!("key {k}: callers got ids {distinct:?}, the table holds {rows:?}"));
        }
    }
    let calls = options.clients * options.keys;
    println!("{run}: {} clients x {} keys via {function}: {calls} calls, retried errors {:?}", options.clients, options.keys, tally.errors);
    problems
}

/// The idiom this extension replaces: check, then insert, with nothing to stop two callers.
fn install_naive(dsn: &str) -> String {
    let mut db = Client::connect(dsn, NoTls).expect("connect");
    db.batch_execute(
        "DROP SCHEMA IF EXISTS race_naive CASCADE;
         CREATE SCHEMA race_naive;
         CREATE TABLE race_naive.conversation (
             id bigserial, uid text, channel_id text, channel_type smallint);
         CREATE FUNCTION race_naive.select_then_insert(p_uid text, p_channel_id text, p_channel_type int)
         RETURNS race_naive.conversation LANGUAGE plpgsql AS $$
         DECLARE row_found race_naive.conversation;
         BEGIN
             SELECT * INTO row_found FROM race_naive.conversation
             WHERE uid = p_uid AND channel_id = p_channel_id AND channel_type = p_channel_type LIMIT 1;
             IF FOUND THEN RETURN row_found; END IF;
             INSERT INTO race_naive.conversation (uid, channel_id, channel_type)
             VALUES (p_uid, p_channel_id, p_channel_type) RETURNING * INTO row_found;
             RETURN row_found;
         END $$;",
    )
    .expect("install the naive select-then-insert");
    "race_naive.select_then_insert".to_string()
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        dsn: String::new(),
        mode: "create".into(),
        clients: 32,
        keys: 100,
        naive: false,
        prefix: None,
        autocommit: false,
        standby: None,
        failover: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--dsn" => options.dsn = value()?,
            "--mode" => options.mode = value()?,
            "--clients" => options.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--keys" => options.keys = value()?.parse().map_err(|e| format!("--keys: {e}"))?,
            "--naive" => options.naive = true,
            "--prefix" => options.prefix = Some(value()?),
            "--autocommit" => options.autocommit = true,
            "--standby" => options.standby = Some(value()?),
            "--failover" => options.failover = true,
            _ => return Err(format!("unknown argument {arg}\nusage: race-test --dsn DSN [--mode create|fanout|reads|messages|large|sync|ddl|memory|index-rebuild] [--clients N] [--keys N] [--naive] [--prefix NAME] [--autocommit] [--standby DSN] [--failover]")),
        }
    }
    if options.dsn.is_empty() {
        return Err("--dsn is required".into());
    }
    Ok(options)
}
