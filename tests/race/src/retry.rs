//! Calls retried as a client of a REPEATABLE READ or SERIALIZABLE database retries them: again
//! after 40001 only, after a random pause that grows with the attempts (immediate retries of
//! clients that conflicted conflict again: the large race once gave a reader up after 100 of
//! them), and not forever. Every mode counts its clients' errors and give-ups here.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::thread;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, Transaction};

/// A call that fails with 40001 this many times running is given up on (a problem).
const MAX_ATTEMPTS: usize = 200;
/// The longest pause between attempts, in milliseconds.
const MAX_PAUSE_MS: usize = 32;

/// xorshift64: reproducible choices without a dependency.
pub struct Random(pub u64);

impl Random {
    /// Seeded differently in every thread and run.
    pub fn unseeded() -> Random {
        Random(RandomState::new().hash_one(thread::current().id()) | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What one client's calls came to.
pub struct Tally {
    /// Failed attempts, counted by SQLSTATE (by the error itself when it has none).
    pub errors: BTreeMap<String, usize>,
    /// Calls given up on, each with the error that ended it.
    pub problems: Vec<String>,
    pauses: Random,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally { errors: BTreeMap::new(), problems: Vec::new(), pauses: Random::unseeded() }
    }
}

impl Tally {
    /// Runs `attempt` until it succeeds, retrying 40001 after a pause; any other error, or too
    /// many 40001, gives the call up (a problem naming `what`) and returns None.
    pub fn retried<T>(&mut self, what: &str, mut attempt: impl FnMut() -> Result<T, postgres::Error>) -> Option<T> {
        for attempts in 1..=MAX_ATTEMPTS {
            let error = match attempt() {
                Ok(value) => return Some(value),
                Err(error) => error,
            };
            let code = error.code().map_or_else(|| format!("no SQLSTATE: {error}"), |c| c.code().to_string());
            *self.errors.entry(code).or_default() += 1;
            if error.code() != Some(&SqlState::T_R_SERIALIZATION_FAILURE) || attempts == MAX_ATTEMPTS {
                self.problems.push(format!("{what} gave up after {attempts} attempts: {error}"));
                return None;
            }
            let ceiling = (1 << attempts.min(6)).min(MAX_PAUSE_MS);
            thread::sleep(Duration::from_millis(self.pauses.below(ceiling + 1) as u64));
        }
        None
    }

    /// `call` in a transaction at `level`, committed; retried as [`Tally::retried`] says.
    pub fn in_transaction<T>(
        &mut self,
        db: &mut Client,
        level: IsolationLevel,
        what: &str,
        mut call: impl FnMut(&mut Transaction) -> Result<T, postgres::Error>,
    ) -> Option<T> {
        self.retried(what, || {
            let mut tx = db.build_transaction().isolation_level(level).start()?;
            let value = call(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// Adds another client's tally to this one.
    pub fn absorb(&mut self, other: &Tally) {
        self.problems.extend(other.problems.iter().cloned());
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }

    /// The problems, and errors a call at `level` must never meet: any at READ COMMITTED, any
    /// but 40001 above it.
    pub fn problems_at(&self, level: IsolationLevel) -> Vec<String> {
        let allowed: &[&str] = if matches!(level, IsolationLevel::ReadCommitted) { &[] } else { &["40001"] };
        let mut problems = self.problems.clone();
        for (code, n) in &self.errors {
            if !allowed.contains(&code.as_str()) {
                problems.push(format!("{n} calls failed with {code}"));
            }
        }
        problems
    }
}
