//! What every SQL function stands on: how it is declared and reads its arguments (`call`), the
//! errors it raises (`errors`), the counters it bumps (`stats`) and their SQL side (`stats_view`),
//! the settings a DBA sets (`settings`),
//! several calls into PostgreSQL under one pgrx guard, for the hit path (`guard`), and the one way
//! what a backend remembers of the catalog is forgotten when it changes (`invalidation`).

pub mod call;
pub mod errors;
pub mod guard;
pub mod invalidation;
pub mod settings;
pub mod stats;
pub mod stats_view;
