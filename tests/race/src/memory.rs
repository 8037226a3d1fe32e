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
//! and the call's peak may exceed the control's by at most `BUDGET_MB`. Needs the server on this
//! machine and permission to read its processes' status (root, as scripts/test.sh runs it).

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::{report, Options};

const KEYS: i64 = 1_000_000;
const BUDGET_MB: f64 = 100.0;

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
    (passed, forms.len() - passed)
}

/// The peak growth of a fresh backend's anonymous memory while it runs `sql`, in MB, and how the
/// statement ended ("ok" or its SQLSTATE).
fn peak_mb(dsn: &str, sql: &str) -> (f64, String) {
    let mut db = Client::connect(dsn, NoTls).expect("connect");
    // Warm the catalog caches the call will need, so that they are not counted.
    db.batch_execute("SELECT count(*) FROM get_or_create_conversations('[]'); SELECT count(*) FROM get_or_create_conversations('g', 1, '{}')")
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
