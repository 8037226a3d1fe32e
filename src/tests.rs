//! Behaviour inside the server: #[pg_test] functions run in a transaction of a test backend.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn creates_then_returns_the_same_row() {
        let first = Spi::get_one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 2)");
        let again = Spi::get_one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 2)");
        assert_eq!(first, again);
    }
}
