//! What every SQL function stands on: how it is declared and reads its arguments (`call`), the
//! errors it raises (`errors`), the counters it bumps (`stats`) and their SQL side (`stats_view`).

pub mod call;
pub mod errors;
pub mod stats;
pub mod stats_view;
