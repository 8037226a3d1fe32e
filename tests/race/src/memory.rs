//! Memory of a refusal: a batch of a million keys (ten thousand is the limit) is refused from its
//! size alone, in about the memory it takes to read the value, whatever form it comes in: jsonb,
//! JSON text or a uid array.
//!
//! Each form is stored in a table first, so that the server's memory to *parse* the input (jsonb_in
//! on a 50 MB literal, say) is not counted: only what the function does with a value it is handed.
//! For each form, a fresh connection's backend is watched from outside (its anonymous resident
//! memory, /proc/PID/status RssAnon, sampled every millisecond) while it runs
//! - a control, which only detoasts the value (the part any function pays), then
//! - the call, which must fail with 54000,
//!
//! and the call's peak may exceed the control's by at most `BUDGET_MB`. Needs the server on this
//! machine and permission to read its processes' status (root, as scripts/test.sh runs it).
//!
//! Then inputs that must be refused by their size alone, never read whole (`sized_inputs`): a
//! 100 MB uid or channel_id, a uid array holding one 100 MB uid, a batch of one key with a 50 MB
//! unknown field (jsonb and text), and a crafted list position listing 110,000 transactions in
//! progress, on a hash-partitioned table (where each statement would carry them). Each must fail
//! with its SQLSTATE while the backend grows by at most `SIZED_BUDGET_MB`; and a page of 1000 rows
//! from a position listing 10,000 (accepted: fewer than the server can have), whose rows'
//! positions must not each repeat them, within the same budget.

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::{report, Options};

const KEYS: i64 = 1_000_000;
const BUDGET_MB: f64 = 100.0;
const SIZED_BUDGET_MB: f64 = 20.0;

pub fn check(options: &Options) -> (usize, usize) {
    let mut db = Client::connect(&options.dsn, NoTls).expect("connect");
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS memory_keys;
         CREATE TABLE memory_keys AS
         SELECT jsonb_agg(jsonb_build_object('uid', 'u' || i, 'channel_id', 'g', 'channel_type', 1)) AS keys_jsonb,
                json_agg(json_build_object('uid', 'u' || i, 'channel_id', 'g', 'channel_type', 1))::text AS keys_text,
                array_agg('u' || i) AS uids
         FROM generate_series(1, {KEYS}) AS i"
    ))
    .expect("build the inputs");
    let forms = [
        ("jsonb", "SELECT jsonb_typeof(keys_jsonb) FROM memory_keys", "SELECT get_or_create_conversations(keys_jsonb) FROM memory_keys"),
        ("JSON text", "SELECT length(keys_text) FROM memory_keys", "SELECT get_or_create_conversations(keys_text) FROM memory_keys"),
        ("uid array", "SELECT array_ndims(uids) FROM memory_keys", "SELECT get_or_create_conversations('g', 1, uids) FROM memory_keys"),
    ];
    let mut passed = 0;
    for (form, control, call) in forms {
        let (control_mb, _) = peak_mb(&options.dsn, control);
        let (call_mb, outcome) = peak_mb(&options.dsn, call);
        println!(
            "{form}: {KEYS} keys refused with {outcome}; backend memory {call_mb:.0} MB at the peak, \
             {control_mb:.0} MB to detoast the value alone"
        );
        let mut problems = Vec::new();
        if outcome != "54000" {
            problems.push(format!("expected 54000, got {outcome}"));
        }
        if call_mb - control_mb > BUDGET_MB {
            problems.push(format!("{:.0} MB beyond detoasting; the budget is {BUDGET_MB} MB", call_mb - control_mb));
        }
        if report(&format!("a million keys as {form}"), &problems) {
            passed += 1;
        }
    }
    db.batch_execute("DROP TABLE memory_keys").expect("clean up");
    let (sized_passed, sized_failed) = sized_inputs(options, &mut db);
    (passed + sized_passed, forms.len() - passed + sized_failed)
}

/// Inputs refused by their size, before they are read: each (what, call, SQLSTATE).
fn sized_inputs(options: &Options, db: &mut Client) -> (usize, usize) {
    db.batch_execute(
        "DROP TABLE IF EXISTS memory_big;
         CREATE TABLE memory_big AS
         SELECT repeat('x', 100000000) AS big,
                ARRAY[repeat('x', 100000000)] AS big_uids,
                jsonb_build_array(jsonb_build_object('uid', 'u', 'channel_id', 'g', 'channel_type', 1, 'junk', repeat('x', 50000000))) AS junk_jsonb,
                jsonb_build_array(jsonb_build_object('uid', 'u', 'channel_id', 'g', 'channel_type', 1, 'junk', repeat('x', 50000000)))::text AS junk_text",
    )
    .expect("build the inputs");
    // A hash-partitioned table in a database of its own, and a position of it with 110,000
    // made-up transactions in progress.
    db.batch_execute("DROP DATABASE IF EXISTS pgconv_memory_partitioned WITH (FORCE)").expect("drop the partitioned database");
    db.batch_execute("CREATE DATABASE pgconv_memory_partitioned").expect("create the partitioned database");
    let partitioned_dsn = format!("{} dbname=pgconv_memory_partitioned", options.dsn);
    let mut partitioned = Client::connect(&partitioned_dsn, NoTls).expect("connect");
    partitioned
        .batch_execute(
            "CREATE EXTENSION pg_conversation;
             SELECT count(*) FROM generate_series(1, 1000) AS i, get_or_create_conversation('lister', 'g' || i, 1);
             SELECT count(*) FROM conversation_partition(4);",
        )
        .expect("a partitioned table");
    let real: String = partitioned
        .query_one("SELECT position FROM conversation_list('lister', NULL, NULL, 1000) ORDER BY position LIMIT 1", &[])
        .expect("a position")
        .get(0);
    // 2/<type>/<system id>/<timeline>:<lsn>/<since>/-/-: since replaced by a horizon of 110,000
    // ids (<generation>:<xmin>:<xmax>:<ids>).
    let fields: Vec<&str> = real.split('/').collect();
    let horizon = if fields[4] == "-" { fields[5] } else { fields[4] };
    let generation = horizon.split(':').next().expect("a generation");
    let ids = (3..110_003u64).map(|id| id.to_string()).collect::<Vec<_>>().join(",");
    let crafted = format!("{}/{}/{}/{}/{generation}:3:200000:{ids}/-/-", fields[0], fields[1], fields[2], fields[3]);
    // Fewer ids than the server can have in progress, so accepted: every row's position must not
    // repeat them. Ids that ended after the stamp trigger was made (a position from before it is
    // refused), and before the reading snapshot: 10,010 transactions are spent first.
    partitioned
        .batch_execute("DO $$ BEGIN FOR i IN 1..10010 LOOP PERFORM pg_catalog.txid_current(); COMMIT; END LOOP; END $$")
        .expect("spend transaction ids");
    let next: i64 = partitioned.query_one("SELECT pg_catalog.txid_current()", &[]).expect("the next id").get(0);
    let (xmin, xmax) = (next as u64 - 10_005, next as u64 - 5);
    let ids = (xmin..xmax).map(|id| id.to_string()).collect::<Vec<_>>().join(",");
    let accepted = format!("{}/{}/{}/{}/{generation}:{xmin}:{xmax}:{ids}/-/-", fields[0], fields[1], fields[2], fields[3]);
    partitioned
        .execute("CREATE TABLE crafted AS SELECT $1::text AS position, $2::text AS accepted", &[&crafted, &accepted])
        .expect("store the positions");
    drop(partitioned);
    let cases = [
        (options.dsn.as_str(), "a 100 MB uid", "SELECT get_or_create_conversation(big, 'g', 1) FROM memory_big", "22001"),
        (options.dsn.as_str(), "a 100 MB channel_id", "SELECT find_conversation('u', big, 1) FROM memory_big", "22001"),
        (options.dsn.as_str(), "a 100 MB uid to list", "SELECT count(*) FROM memory_big, conversation_list(big, NULL, NULL, 10)", "22001"),
        (
            options.dsn.as_str(),
            "a uid array of one 100 MB uid",
            "SELECT get_or_create_conversations('g', 1, big_uids) FROM memory_big",
            "54000",
        ),
        (
            options.dsn.as_str(),
            "a 100 MB sender_uid",
            "SELECT conversation_message_arrived('g', 1, ARRAY['u'], 1, big) FROM memory_big",
            "22001",
        ),
        (
            options.dsn.as_str(),
            "one jsonb key with a 50 MB unknown field",
            "SELECT get_or_create_conversations(junk_jsonb) FROM memory_big",
            "54000",
        ),
        (
            options.dsn.as_str(),
            "one JSON text key with a 50 MB unknown field",
            "SELECT get_or_create_conversations(junk_text) FROM memory_big",
            "54000",
        ),
        (
            partitioned_dsn.as_str(),
            "a position listing 110,000 transactions, on a partitioned table",
            "SELECT count(*) FROM crafted, conversation_list('lister', NULL, crafted.position, 200)",
            "22023",
        ),
        (
            partitioned_dsn.as_str(),
            "a page of 1000 from a position listing 10,000 transactions, on a partitioned table",
            "SELECT count(*) FROM crafted, conversation_list('lister', NULL, crafted.accepted, 1000)",
            "ok",
        ),
    ];
    let mut passed = 0;
    for (dsn, what, call, expected) in cases {
        let (call_mb, outcome) = peak_mb(dsn, call);
        println!("{what}: ended with {outcome}; backend memory grew {call_mb:.0} MB at the peak");
        let mut problems = Vec::new();
        if outcome != expected {
            problems.push(format!("expected {expected}, got {outcome}"));
        }
        if call_mb > SIZED_BUDGET_MB {
            problems.push(format!("{call_mb:.0} MB to refuse it; the budget is {SIZED_BUDGET_MB} MB"));
        }
        if report(what, &problems) {
            passed += 1;
        }
    }
    db.batch_execute("DROP TABLE memory_big").expect("clean up");
    db.batch_execute("DROP DATABASE pgconv_memory_partitioned WITH (FORCE)").expect("clean up");
    (passed, cases.len() - passed)
}

/// The peak growth of a fresh backend's anonymous memory while it runs `sql`, in MB, and how the
/// statement ended ("ok" or its SQLSTATE).
fn peak_mb(dsn: &str, sql: &str) -> (f64, String) {
    let mut db = Client::connect(dsn, NoTls).expect("connect");
    // Warm the catalog caches the call will need, so that they are not counted.
    db.batch_execute(
        "SELECT count(*) FROM get_or_create_conversations('[]'); SELECT count(*) FROM get_or_create_conversations('g', 1, '{}')",
    )
    .expect("warm up");
    let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    let baseline = rss_anon_kb(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_anon_kb(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let outcome = match db.batch_execute(sql) {
        Ok(()) => "ok".to_string(),
        Err(error) => error.code().map_or_else(|| error.to_string(), |code| code.code().to_string()),
    };
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = peak.load(Ordering::Relaxed).max(rss_anon_kb(pid));
    ((peak - baseline) as f64 / 1024.0, outcome)
}

fn rss_anon_kb(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read the backend's /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc status")
}
