//! Behaviour inside the server. Each #[pg_test] runs in its own transaction of a test backend,
//! rolled back at the end, so tests see only their own rows. Interleavings of several
//! transactions are tested by the isolation specs (tests/isolation), volume by the race test.

#[pgrx::pg_schema]
pub(crate) mod tests {
    use pgrx::prelude::*;

    // Runs a statement in a subtransaction; returns 'SQLSTATE: message' if it fails, else NULL.
    extension_sql!(
        r#"
        CREATE FUNCTION tests.error_of(statement text) RETURNS text
        LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE statement;
            RETURN NULL;
        EXCEPTION WHEN OTHERS THEN
            RETURN SQLSTATE || ': ' || SQLERRM;
        END $$;
        "#,
        name = "test_helpers",
    );

    pub(crate) fn one<T: IntoDatum + FromDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql).expect("query failed").expect("query returned NULL")
    }

    /// 'SQLSTATE: message' of the statement's error, or None when it succeeds.
    pub(crate) fn outcome_of(statement: &str) -> Option<String> {
        Spi::get_one_with_args::<String>("SELECT tests.error_of($1)", &[statement.into()]).unwrap()
    }

    /// The statement's SQLSTATE, '00000' when it succeeds.
    pub(crate) fn sqlstate_of(statement: &str) -> String {
        outcome_of(statement).map_or("00000".into(), |error| error[..5].to_string())
    }

    pub(crate) fn error_of(statement: &str) -> String {
        outcome_of(statement).expect("the statement did not fail")
    }

    fn rows_inserted_by_this_transaction() -> i64 {
        one("SELECT n_tup_ins FROM pg_stat_xact_user_tables WHERE relname = 'conversation'")
    }

    fn advisory_locks_held() -> i64 {
        one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
    }

    #[pg_test]
    fn creates_once_then_returns_the_same_row() {
        let first: i64 = one("SELECT id FROM get_or_create_conversation('u1', 'g1', 2)");
        let again: i64 = one("SELECT id FROM get_or_create_conversation('u1', 'g1', 2)");
        assert_eq!(first, again);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE uid = 'u1'"), 1);
    }

    #[pg_test]
    fn new_rows_start_at_zero_and_cmd_channels_have_type_2() {
        let (kind, starts_at_zero) = Spi::get_two::<i16, bool>(
            "SELECT type, unread_count = 0 AND readed_to_msg_seq = 0 AND last_msg_seq = 0
                    AND deleted_at_msg_seq = 0 AND created_at = updated_at
             FROM get_or_create_conversation('u1', 'ac43789cca9f4d298ceee040b02a797b____cmd', 2)",
        )
        .unwrap();
        assert_eq!(kind, Some(2));
        assert_eq!(starts_at_zero, Some(true));
        assert_eq!(one::<i16>("SELECT type FROM get_or_create_conversation('u1', 'g1', 2)"), 1);
        // The suffix must end the id to make a CMD channel.
        assert_eq!(one::<i16>("SELECT type FROM get_or_create_conversation('u1', 'g1____cmdx', 2)"), 1);
    }

    // ---- the returned row (src/result_row.rs)

    /// The table's tuples are copied into conversation_row as they are: the two must agree on
    /// every attribute, dropped ones included, in name, type and physical layout.
    #[pg_test]
    fn conversation_row_has_exactly_the_tables_columns() {
        let attributes = |relation: &str| -> String {
            one(&format!(
                "SELECT string_agg(format('%s %s %s %s %s %s', attnum, attname, atttypid::regtype,
                                          attlen, attalign, attisdropped), ', ' ORDER BY attnum)
                 FROM pg_attribute WHERE attrelid = '{relation}'::regclass AND attnum > 0"
            ))
        };
        assert_eq!(attributes("conversation_row"), attributes("conversation"));
        assert!(attributes("conversation").ends_with("13 hidden boolean 1 c f, 14 large boolean 1 c f"));
    }

    #[pg_test]
    fn the_returned_row_is_the_stored_row() {
        // Created (through the insert), then found (through the probe): both the row as stored.
        let created: String = one("SELECT row_to_json(r)::text FROM get_or_create_conversation('u1', 'g1', 2) AS r");
        let (typed, found) = Spi::get_two::<String, String>(
            "SELECT pg_typeof(r)::text, row_to_json(r)::text FROM get_or_create_conversation('u1', 'g1', 2) AS r",
        )
        .unwrap();
        let stored: String = one("SELECT row_to_json(c)::text FROM conversation AS c");
        assert_eq!(typed.as_deref(), Some("conversation_row"));
        assert_eq!((created.as_str(), found.as_deref()), (stored.as_str(), Some(stored.as_str())));
        // Code written against the table's row type keeps working.
        Spi::run(
            "DO $$
             DECLARE c conversation;
             BEGIN
                 c := get_or_create_conversation('u1', 'g1', 2);
                 IF c.uid IS DISTINCT FROM 'u1' OR c.type IS DISTINCT FROM 1::smallint THEN
                     RAISE EXCEPTION 'assigned %', c;
                 END IF;
             END $$",
        )
        .unwrap();
        let marked: String = one("SELECT row_to_json(r)::text FROM conversation_mark_read('u1', 'g1', 2, 3) AS r");
        assert_eq!(marked, one::<String>("SELECT row_to_json(c)::text FROM conversation AS c"));
    }

    /// Toasted values are inlined into the returned row: it must not point into the table.
    #[pg_test]
    fn a_row_with_long_values_is_returned_whole() {
        let uid = "u".repeat(255);
        let channel_id = "c".repeat(255);
        let query = format!("SELECT length(uid) + length(channel_id) FROM get_or_create_conversation('{uid}', '{channel_id}', 1)");
        assert_eq!(one::<i32>(&query), 510);
        assert_eq!(one::<i32>(&query), 510);
    }

    #[pg_test]
    fn every_part_of_the_key_matters() {
        let distinct: i64 = one("SELECT count(DISTINCT c.id) FROM (VALUES ('u1','g1',1), ('u1','g1',2), ('u2','g1',1), ('u1','g2',1))
                 AS k(uid, channel_id, channel_type),
             LATERAL get_or_create_conversation(k.uid, k.channel_id, k.channel_type) AS c");
        assert_eq!(distinct, 4);
    }

    #[pg_test]
    fn a_hit_writes_nothing_and_takes_no_advisory_lock() {
        let id: i64 = one("SELECT id FROM get_or_create_conversation('u1', 'g1', 2)");
        assert_eq!(rows_inserted_by_this_transaction(), 1);
        let ids: i64 = one("SELECT count(DISTINCT (get_or_create_conversation('u1', 'g1', 2)).id) FROM generate_series(1, 100)");
        assert_eq!(ids, 1);
        assert_eq!(rows_inserted_by_this_transaction(), 1, "a hit inserted a row");
        // currval is per session: a hit that drew an id would move it.
        assert_eq!(one::<i64>("SELECT currval('conversation_id_seq')"), id, "a hit drew a sequence value");
        assert_eq!(one::<i64>("SELECT n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables WHERE relname = 'conversation'"), 0);
        assert_eq!(advisory_locks_held(), 0);
    }

    #[pg_test]
    fn the_advisory_lock_is_released_after_each_creation() {
        let created: i64 = one("SELECT count(*) FROM generate_series(1, 50) AS i, get_or_create_conversation('u' || i, 'g1', 1)");
        assert_eq!(created, 50);
        assert_eq!(advisory_locks_held(), 0);
    }

    #[pg_test]
    fn one_statement_creates_100000_conversations_at_default_lock_settings() {
        assert_eq!(one::<String>("SHOW max_locks_per_transaction"), "64");
        let created: i64 = one("SELECT count(*) FROM generate_series(1, 100000) AS i,
                 get_or_create_conversation('member' || i, 'big-group', 2)");
        assert_eq!(created, 100_000);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE channel_id = 'big-group'"), 100_000);
    }

    #[pg_test]
    fn the_same_key_twice_in_one_statement_is_one_row() {
        // Needs the command counter advanced before each check: the second call must see the
        // row the first inserted within the same statement.
        let ids: i64 = one("SELECT count(DISTINCT (get_or_create_conversation('u1', 'g' || (i % 3), 1)).id)
             FROM generate_series(1, 30) AS i");
        assert_eq!(ids, 3);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation"), 3);
    }

    #[pg_test]
    fn a_rolled_back_subtransaction_leaves_no_row_and_a_retry_creates_it() {
        Spi::run(
            "DO $$ BEGIN
                 PERFORM get_or_create_conversation('u1', 'g1', 1);
                 RAISE EXCEPTION 'roll back to the savepoint';
             EXCEPTION WHEN raise_exception THEN NULL;
             END $$",
        )
        .unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation"), 0);
        assert_eq!(advisory_locks_held(), 0);
        one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)");
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation"), 1);
    }

    /// The relations' OIDs are remembered per backend (find.rs) and forgotten on invalidation:
    /// after a rename the name no longer leads to the table, and the next call must notice.
    #[pg_test]
    fn a_changed_table_is_looked_up_again() {
        let id: i64 = one("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)");
        Spi::run("ALTER TABLE conversation RENAME TO conversation_renamed").unwrap();
        assert_eq!(
            outcome_of("SELECT get_or_create_conversation('u1', 'g1', 1)").as_deref(),
            Some("55000: pg_conversation's table public.conversation does not exist")
        );
        Spi::run("ALTER TABLE conversation_renamed RENAME TO conversation").unwrap();
        assert_eq!(one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)"), id);
    }

    /// A row written before a column was added holds fewer attributes than the table: returned
    /// as a copy (the returned type has the table's layout), it must carry the column's value
    /// from the table's descriptor, not NULL. 0.9.0's update adds column large so to every row.
    #[pg_test]
    fn a_row_written_before_a_column_was_added_returns_the_column_default() {
        Spi::run("LOCK TABLE conversation IN ACCESS EXCLUSIVE MODE").unwrap();
        let id: i64 = one("SELECT id FROM get_or_create_conversation('older', 'before-column', 1)");
        Spi::run("ALTER TABLE conversation ADD COLUMN pinned integer NOT NULL DEFAULT 7").unwrap();
        Spi::run("ALTER TYPE conversation_row ADD ATTRIBUTE pinned integer").unwrap();
        for function in ["get_or_create_conversation", "find_conversation"] {
            let returned = format!("SELECT ({function}('older', 'before-column', 1)).");
            assert_eq!(one::<i64>(&format!("{returned}id")), id);
            assert_eq!(one::<i32>(&format!("{returned}pinned")), 7);
            assert!(!one::<bool>(&format!("{returned}large")));
        }
        // A row written after it holds them all.
        one::<i64>("SELECT id FROM get_or_create_conversation('older', 'after-column', 1)");
        assert_eq!(one::<i32>("SELECT (find_conversation('older', 'after-column', 1)).pinned"), 7);
    }

    // ---- large channels (relation/membership.rs, relation/large.rs)

    /// Makes ('lm', channel) a membership of a large channel by hand (no function does yet): its
    /// row counted to seq 10 (2 unread, read to 8, not hidden), the channel's row at `channel_last`.
    fn large_membership(channel: &str, channel_last: i64) {
        one::<i64>(&format!("SELECT id FROM get_or_create_conversation('lm', '{channel}', 1)"));
        Spi::run(&format!(
            "UPDATE conversation SET large = true, last_msg_seq = 10, unread_count = 2, readed_to_msg_seq = 8,
                 updated_at = '2026-01-01' WHERE uid = 'lm' AND channel_id = '{channel}';
             INSERT INTO conversation_channel (channel_id, channel_type, last_msg_seq, updated_at)
             VALUES ('{channel}', 1, {channel_last}, '2026-06-01')"
        ))
        .unwrap();
    }

    fn state_of_large(function: &str, channel: &str) -> String {
        one(&format!(
            "SELECT format('last=%s unread=%s read=%s hidden=%s at=%s', last_msg_seq, unread_count, readed_to_msg_seq, hidden,
                           CASE WHEN updated_at = now() THEN 'now' ELSE to_char(updated_at AT TIME ZONE 'UTC', 'MM-DD') END)
             FROM {function}('lm', '{channel}', 1)"
        ))
    }

    /// A large membership is returned as it stands: the messages after the seq its row counted
    /// to, from its channel's row, each unread past the read position, dated by the channel.
    #[pg_test]
    fn a_large_membership_returns_what_arrived_since_its_row() {
        large_membership("lm-g1", 13);
        for function in ["get_or_create_conversation", "find_conversation"] {
            assert_eq!(state_of_large(function, "lm-g1"), "last=13 unread=5 read=8 hidden=f at=06-01");
        }
        // The channel not past the row: the row as stored.
        Spi::run("UPDATE conversation_channel SET last_msg_seq = 10 WHERE channel_id = 'lm-g1'").unwrap();
        assert_eq!(state_of_large("find_conversation", "lm-g1"), "last=10 unread=2 read=8 hidden=f at=01-01");
        // Hidden at 10: hidden until the channel moves, then back with the new messages only.
        Spi::run("UPDATE conversation SET hidden = true WHERE uid = 'lm' AND channel_id = 'lm-g1'").unwrap();
        assert_eq!(state_of_large("find_conversation", "lm-g1"), "last=10 unread=2 read=8 hidden=t at=01-01");
        Spi::run("UPDATE conversation_channel SET last_msg_seq = 12 WHERE channel_id = 'lm-g1'").unwrap();
        assert_eq!(state_of_large("get_or_create_conversation", "lm-g1"), "last=12 unread=2 read=8 hidden=f at=06-01");
        // Its channel row gone: the row as it was counted.
        Spi::run("DELETE FROM conversation_channel WHERE channel_id = 'lm-g1'").unwrap();
        assert_eq!(state_of_large("find_conversation", "lm-g1"), "last=10 unread=2 read=8 hidden=t at=01-01");
    }

    /// A row that is not a large membership is returned as stored, whatever a channel row says.
    #[pg_test]
    fn a_per_member_row_ignores_a_channel_row() {
        large_membership("lm-g2", 20);
        Spi::run("UPDATE conversation SET large = false WHERE uid = 'lm' AND channel_id = 'lm-g2'").unwrap();
        assert_eq!(state_of_large("get_or_create_conversation", "lm-g2"), "last=10 unread=2 read=8 hidden=f at=01-01");
    }

    /// A large membership cannot be read without the channel table as the extension made it: 55000,
    /// nothing returned from the wrong column.
    #[pg_test]
    fn a_large_membership_needs_the_channel_table() {
        large_membership("lm-g3", 13);
        Spi::run("LOCK TABLE conversation_channel IN ACCESS EXCLUSIVE MODE").unwrap();
        Spi::run("ALTER TABLE conversation_channel RENAME TO conversation_channel_gone").unwrap();
        assert!(error_of("SELECT find_conversation('lm', 'lm-g3', 1)")
            .starts_with("55000: pg_conversation's table conversation_channel does not exist"));
        Spi::run("ALTER TABLE conversation_channel_gone RENAME TO conversation_channel").unwrap();
        Spi::run("ALTER TABLE conversation_channel ALTER COLUMN last_msg_seq TYPE numeric").unwrap();
        assert!(error_of("SELECT find_conversation('lm', 'lm-g3', 1)").starts_with("55000: table conversation_channel cannot be used"));
        Spi::run("ALTER TABLE conversation_channel ALTER COLUMN last_msg_seq TYPE bigint").unwrap();
        assert_eq!(state_of_large("find_conversation", "lm-g3"), "last=13 unread=5 read=8 hidden=f at=06-01");
        // A per-member row never reads it.
        Spi::run("ALTER TABLE conversation_channel RENAME TO conversation_channel_gone").unwrap();
        assert_eq!(one::<i64>("SELECT last_msg_seq FROM get_or_create_conversation('lm', 'lm-other', 1)"), 0);
    }

    /// A read of a large membership applies to it as it stands, as per member: the unread count
    /// it had, read down; the messages after it still derived from the channel.
    #[pg_test]
    fn a_read_of_a_large_membership_applies_to_it_as_it_stands() {
        large_membership("lm-r1", 13);
        let read = "SELECT format('last=%s unread=%s read=%s', last_msg_seq, unread_count, readed_to_msg_seq)";
        assert_eq!(one::<String>(&format!("{read} FROM conversation_mark_read('lm', 'lm-r1', 1, 12)")), "last=13 unread=1 read=12");
        assert_eq!(
            one::<String>(&format!("{read} FROM conversation WHERE uid = 'lm' AND channel_id = 'lm-r1'")),
            "last=13 unread=1 read=12"
        );
        Spi::run("UPDATE conversation_channel SET last_msg_seq = 15 WHERE channel_id = 'lm-r1'").unwrap();
        assert_eq!(state_of_large("find_conversation", "lm-r1"), "last=15 unread=3 read=12 hidden=f at=now");
        // A read that moves nothing still returns it as it stands.
        assert_eq!(one::<String>(&format!("{read} FROM conversation_mark_read('lm', 'lm-r1', 1, 3)")), "last=15 unread=3 read=12");
        // Too far ahead of the channel's last message: refused, nothing written.
        assert_eq!(sqlstate_of("SELECT conversation_mark_read('lm', 'lm-r1', 1, 1016)"), "22023");
    }

    /// A hide of a large membership needs the newest message shown (as per member), and a newer
    /// one brings it back with the new messages only; a clear reads up to its seq.
    #[pg_test]
    fn hide_and_clear_of_a_large_membership_count_to_its_channel() {
        large_membership("lm-h1", 13);
        assert!(!one::<bool>("SELECT hidden FROM conversation_hide('lm', 'lm-h1', 1, 12)"));
        assert!(one::<bool>("SELECT hidden FROM conversation_hide('lm', 'lm-h1', 1, 13)"));
        Spi::run("UPDATE conversation_channel SET last_msg_seq = 14 WHERE channel_id = 'lm-h1'").unwrap();
        assert_eq!(state_of_large("find_conversation", "lm-h1"), "last=14 unread=1 read=8 hidden=f at=06-01");
        let cleared = one::<String>("SELECT format('%s %s %s', deleted_at_msg_seq, readed_to_msg_seq, unread_count) FROM conversation_clear('lm', 'lm-h1', 1, NULL)");
        assert_eq!(cleared, "14 14 0");
    }

    /// The rule of relation/large.rs is written twice: in Rust for reads, in SQL for the writes
    /// that materialize (state/materialize.rs). Over every kind of row and channel, the two agree.
    #[pg_test]
    fn reads_and_materializing_writes_derive_alike() {
        Spi::run(
            "INSERT INTO conversation (uid, channel_id, channel_type, large, last_msg_seq, unread_count, readed_to_msg_seq, hidden, updated_at)
             SELECT 'grid', format('mg-%s-%s-%s-%s-%s', last, unread, read, hidden, channel), 1, true, last, unread, read, hidden,
                    '2026-01-01'::timestamptz + make_interval(days => channel)
             FROM unnest(ARRAY[5, 10]) AS last, unnest(ARRAY[0, 3]) AS unread, unnest(ARRAY[2, 8, 12]) AS read,
                  unnest(ARRAY[false, true]) AS hidden, unnest(ARRAY[4, 10, 11, 20]) AS channel;
             INSERT INTO conversation_channel (channel_id, channel_type, last_msg_seq, updated_at)
             SELECT channel_id, 1, split_part(channel_id, '-', 6)::int8, '2026-03-01'::timestamptz
             FROM conversation WHERE uid = 'grid'",
        )
        .unwrap();
        let shown = "format('%s %s %s %s %s', c.channel_id, c.last_msg_seq, c.unread_count, c.hidden, c.updated_at)";
        let read: String = one(&format!(
            "SELECT string_agg({shown}, ', ' ORDER BY c.channel_id) FROM conversation AS k, find_conversation(k.uid, k.channel_id, 1) AS c WHERE k.uid = 'grid'"
        ));
        // A hide up to seq 0 hides nothing, after materializing.
        Spi::run("SELECT count(conversation_hide(uid, channel_id, 1, 0)) FROM conversation WHERE uid = 'grid'").unwrap();
        let written: String =
            one(&format!("SELECT string_agg({shown}, ', ' ORDER BY c.channel_id) FROM conversation AS c WHERE c.uid = 'grid'"));
        assert_eq!(read, written);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE uid = 'grid' AND last_msg_seq = 20"), 24);
    }

    /// Each member of `channel` as the functions return it: uid last unread read hidden.
    fn members_of(channel: &str) -> String {
        one(&format!(
            "SELECT string_agg(format('%s %s %s %s %s', c.uid, c.last_msg_seq, c.unread_count, c.readed_to_msg_seq, c.hidden), ', ' ORDER BY c.uid)
             FROM conversation AS k, find_conversation(k.uid, k.channel_id, 1) AS c WHERE k.channel_id = '{channel}'"
        ))
    }

    /// What happens to a group, in order: messages (seq, sender, members), reads, hides, clears.
    fn play(channel: &str, steps: &[&str]) {
        for step in steps {
            let statement = step.replace("CH", channel);
            Spi::run(&format!("SELECT {statement}")).unwrap();
        }
    }

    /// A large channel gives every member what per member gives, message after message (seqs that
    /// go up by one, in order): unread counts, reads, hides, the sender's own messages, members
    /// who join and leave. Only the channel's row and the sender's are written per message.
    #[pg_test]
    fn a_large_channel_gives_what_per_member_gives() {
        let steps = [
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'c'], 1, 'a')",
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'c'], 2, 'b')",
            "conversation_mark_read('c', 'CH', 1, 1)",
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'c'], 3, NULL)",
            "conversation_hide('a', 'CH', 1, 3)",
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'd'], 4, 'd')",
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'd'], 5, 'b')",
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'd'], 4, 'd')",
            "conversation_clear('b', 'CH', 1, 4)",
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'd'], 6, NULL)",
        ];
        play("per-member", &steps);
        // Large from its first message on.
        one::<i64>("SELECT conversation_channel_make_large('large', 1, ARRAY['a', 'b', 'c'])");
        play("large", &steps);
        assert_eq!(members_of("large"), members_of("per-member"));
        assert_eq!(members_of("large"), "a 6 3 1 f, b 6 1 5 f, c 3 2 1 f, d 6 2 4 f");
        // c left (per member again, as it stood); the others are memberships.
        assert_eq!(
            one::<String>("SELECT string_agg(uid || ' ' || large, ', ' ORDER BY uid) FROM conversation WHERE channel_id = 'large'"),
            "a true, b true, c false, d true"
        );
        // Made large halfway: the same again.
        play("halfway", &steps[..4]);
        assert_eq!(one::<i64>("SELECT conversation_channel_make_large('halfway', 1, ARRAY['a', 'b', 'c'])"), 3);
        play("halfway", &steps[4..]);
        assert_eq!(members_of("halfway"), members_of("per-member"));
        // And per member again: every value kept, stored.
        assert_eq!(one::<i64>("SELECT conversation_channel_make_per_member('halfway', 1)"), 3);
        assert_eq!(members_of("halfway"), members_of("per-member"));
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE channel_id = 'halfway' AND large"), 0);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation_channel WHERE channel_id = 'halfway'"), 0);
    }

    /// pg_conversation.large_channel_members: a message naming at least that many members makes
    /// its per-member channel large first, and every member then reads what per member gives;
    /// fewer members, or the setting at 0 (the default), leave the channel per member.
    #[pg_test]
    fn a_message_naming_enough_members_makes_its_channel_large() {
        let steps = [
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b'], 1, 'a')",
            "conversation_mark_read('b', 'CH', 1, 1)",
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'c'], 2, 'b')",
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'c'], 3, NULL)",
            "conversation_hide('a', 'CH', 1, 3)",
            "conversation_message_arrived('CH', 1, ARRAY['a', 'b', 'c'], 4, 'c')",
        ];
        let large = |channel: &str| one::<i64>(&format!("SELECT count(*) FROM conversation_channel WHERE channel_id = '{channel}'")) == 1;
        assert_eq!(one::<String>("SHOW pg_conversation.large_channel_members"), "0");
        play("auto-off", &steps);
        assert!(!large("auto-off"));
        Spi::run("SET LOCAL pg_conversation.large_channel_members = 3").unwrap();
        play("auto-at-3", &steps[..2]);
        assert!(!large("auto-at-3"), "two members: per member");
        play("auto-at-3", &steps[2..3]);
        assert!(large("auto-at-3"), "three members: large from this message on");
        play("auto-at-3", &steps[3..]);
        assert_eq!(members_of("auto-at-3"), members_of("auto-off"));
        // The message after the change wrote the channel's row and its sender's only.
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE channel_id = 'auto-at-3' AND last_msg_seq = 4"), 1);
        Spi::run("SET LOCAL pg_conversation.large_channel_members = 4").unwrap();
        play("auto-at-4", &steps);
        assert!(!large("auto-at-4"));
    }

    /// A message to a large channel naming the members it named before writes two rows: the
    /// channel's and the sender's; a redelivery writes none and advances none.
    #[pg_test]
    fn a_message_to_a_large_channel_writes_two_rows() {
        let members = "ARRAY['w1', 'w2', 'w3', 'w4']";
        one::<i64>(&format!("SELECT conversation_channel_make_large('two-rows', 1, {members})"));
        one::<i32>(&format!("SELECT conversation_message_arrived('two-rows', 1, {members}, 1, 'w1')"));
        assert_eq!(one::<i32>(&format!("SELECT conversation_message_arrived('two-rows', 1, {members}, 2, 'w2')")), 4);
        // Stored at 2: the sender's row alone; the channel's row is at 2.
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE channel_id = 'two-rows' AND last_msg_seq = 2"), 1);
        assert_eq!(one::<i64>("SELECT last_msg_seq FROM conversation_channel WHERE channel_id = 'two-rows'"), 2);
        assert_eq!(one::<i32>(&format!("SELECT conversation_message_arrived('two-rows', 1, {members}, 2, 'w2')")), 0);
        assert_eq!(one::<i32>("SELECT unread_count FROM find_conversation('w4', 'two-rows', 1)"), 2);
    }

    /// A membership deleted (by hand, by a cleanup), or moved to another user, is made again by
    /// the next message that names its member, with that message unread: per member and large
    /// alike, though the message names the same members as the last one did.
    #[pg_test]
    fn a_membership_that_left_comes_back_with_the_next_message() {
        for (channel, large) in [("left-per-member", false), ("left-large", true)] {
            if large {
                one::<i64>(&format!("SELECT conversation_channel_make_large('{channel}', 1, ARRAY['l1', 'l2', 'l3'])"));
            }
            Spi::run(&format!(
                "SELECT conversation_message_arrived('{channel}', 1, ARRAY['l1', 'l2', 'l3'], 1, 'l1');
                 DELETE FROM conversation WHERE uid = 'l2' AND channel_id = '{channel}';
                 UPDATE conversation SET uid = 'l3-moved' WHERE uid = 'l3' AND channel_id = '{channel}';
                 SELECT conversation_message_arrived('{channel}', 1, ARRAY['l1', 'l2', 'l3'], 2, 'l1')"
            ))
            .unwrap();
            let state = |uid: &str| {
                one::<String>(&format!(
                    "SELECT format('%s %s %s', last_msg_seq, unread_count, large) FROM find_conversation('{uid}', '{channel}', 1)"
                ))
            };
            let expected = if large { "2 1 t" } else { "2 1 f" };
            assert_eq!(state("l2"), expected, "{channel}");
            assert_eq!(state("l3"), expected, "{channel}");
        }
    }

    /// A role that may write conversations may write to large channels without any privilege on
    /// conversation_channel, as on the clock: the extension reads and writes it itself.
    #[pg_test]
    fn writers_need_no_privilege_on_the_channel_table() {
        one::<i64>("SELECT conversation_channel_make_large('unprivileged', 1, ARRAY['p1', 'p2'])");
        Spi::run(
            "CREATE ROLE pgconv_member_writer;
             GRANT USAGE ON SCHEMA tests TO pgconv_member_writer;
             GRANT SELECT, INSERT, UPDATE, DELETE ON conversation TO pgconv_member_writer;
             GRANT USAGE ON SEQUENCE conversation_id_seq TO pgconv_member_writer;
             REVOKE ALL ON conversation_channel FROM pgconv_member_writer;
             SET LOCAL ROLE pgconv_member_writer",
        )
        .unwrap();
        let outcomes = [
            sqlstate_of("SELECT conversation_message_arrived('unprivileged', 1, ARRAY['p1', 'p2', 'p3'], 1, 'p1')"),
            sqlstate_of("SELECT conversation_message_arrived('unprivileged', 1, ARRAY['p1', 'p2', 'p3'], 2, 'p2')"),
            sqlstate_of("SELECT conversation_mark_read('p3', 'unprivileged', 1, 1)"),
            sqlstate_of("SELECT conversation_hide('p1', 'unprivileged', 1, 2)"),
            sqlstate_of("SELECT find_conversation('p3', 'unprivileged', 1)"),
            sqlstate_of("SELECT count(*) FROM conversation_channel"),
        ];
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(outcomes, ["00000", "00000", "00000", "00000", "00000", "42501"]);
        assert_eq!(members_of("unprivileged"), "p1 2 1 1 t, p2 2 0 2 f, p3 2 1 1 f");
    }

    /// A function's schema is remembered per backend (glue/call.rs) and forgotten when pg_proc
    /// changes: a function moved to another schema looks for the table there on its next call.
    #[pg_test]
    fn a_moved_function_looks_in_its_new_schema() {
        let id: i64 = one("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)");
        Spi::run("CREATE SCHEMA moved; ALTER FUNCTION get_or_create_conversation(text, text, integer) SET SCHEMA moved").unwrap();
        assert_eq!(
            outcome_of("SELECT moved.get_or_create_conversation('u1', 'g1', 1)").as_deref(),
            Some("55000: pg_conversation's table moved.conversation does not exist")
        );
        Spi::run("ALTER FUNCTION moved.get_or_create_conversation(text, text, integer) SET SCHEMA public").unwrap();
        assert_eq!(one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)"), id);
    }

    #[pg_test]
    fn writers_that_bypass_the_function_cannot_duplicate_a_key() {
        one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)");
        assert_eq!(sqlstate_of("INSERT INTO conversation (uid, channel_id, channel_type) VALUES ('u1', 'g1', 1)"), "23505");
    }

    /// conversation_key_check holds bypassing writers to the function's own limits, edge for edge.
    #[pg_test]
    fn writers_that_bypass_the_function_meet_the_same_limits() {
        let insert = |uid: &str, channel_id: &str, channel_type: i32| {
            sqlstate_of(&format!(
                "INSERT INTO conversation (uid, channel_id, channel_type) VALUES ('{uid}', '{channel_id}', {channel_type})"
            ))
        };
        let longest = "x".repeat(255);
        let too_long = "x".repeat(256);
        assert_eq!(insert(&longest, &longest, 255), "00000");
        assert_eq!(insert("u1", "g1", 0), "00000");
        for (uid, channel_id, channel_type) in
            [("", "g1", 1), ("u1", "", 1), (too_long.as_str(), "g1", 1), ("u1", too_long.as_str(), 1), ("u1", "g1", 256), ("u1", "g1", -1)]
        {
            assert_eq!(insert(uid, channel_id, channel_type), "23514", "{uid:.8} {channel_id:.8} {channel_type}");
        }
        // Multibyte: the limit is in bytes, as in the function (85 x 3 bytes = 255, 86 x 3 = 258).
        assert_eq!(insert(&"€".repeat(85), "g2", 1), "00000");
        assert_eq!(insert(&"€".repeat(86), "g2", 1), "23514");
        assert_eq!(
            outcome_of("INSERT INTO conversation (uid, channel_id, channel_type) VALUES ('', 'g1', 1)").as_deref(),
            Some("23514: new row for relation \"conversation\" violates check constraint \"conversation_key_check\"")
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation"), 3);
    }

    #[pg_test]
    fn callers_need_the_table_privileges_even_on_a_hit() {
        one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)");
        Spi::run("CREATE ROLE pgconv_reader; CREATE ROLE pgconv_nobody; CREATE ROLE pgconv_app").unwrap();
        Spi::run(
            "GRANT USAGE ON SCHEMA tests TO pgconv_reader, pgconv_nobody, pgconv_app;
             GRANT SELECT ON conversation TO pgconv_reader;
             GRANT SELECT, INSERT ON conversation TO pgconv_app;
             GRANT USAGE ON SEQUENCE conversation_id_seq TO pgconv_app",
        )
        .unwrap();
        let hit = "SELECT get_or_create_conversation('u1', 'g1', 1)";
        let miss = "SELECT get_or_create_conversation('u2', 'g1', 1)";
        let as_role = |role: &str, statement: &str| {
            Spi::run(&format!("SET LOCAL ROLE {role}")).unwrap();
            let state = sqlstate_of(statement);
            Spi::run("RESET ROLE").unwrap();
            state
        };
        assert_eq!(as_role("pgconv_nobody", hit), "42501");
        assert_eq!(as_role("pgconv_reader", hit), "00000");
        assert_eq!(as_role("pgconv_reader", miss), "42501");
        assert_eq!(as_role("pgconv_app", miss), "00000");
    }

    #[pg_test]
    fn row_level_security_is_refused_not_bypassed() {
        one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)");
        Spi::run(
            "CREATE ROLE pgconv_tenant;
             GRANT USAGE ON SCHEMA tests TO pgconv_tenant;
             GRANT SELECT, INSERT ON conversation TO pgconv_tenant;
             ALTER TABLE conversation ENABLE ROW LEVEL SECURITY;
             SET LOCAL ROLE pgconv_tenant",
        )
        .unwrap();
        assert_eq!(sqlstate_of("SELECT get_or_create_conversation('u1', 'g1', 1)"), "0A000");
    }

    #[pg_test]
    fn bad_input_gets_its_sqlstate_and_writes_nothing() {
        let id: i64 = one("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)");
        let too_long = format!("'{}'", "x".repeat(256));
        let wide = format!("'{}'", "é".repeat(128)); // 256 bytes in 128 characters
        let cases = [
            ("NULL", "'g1'", "1", "22004"),
            ("'u1'", "NULL", "1", "22004"),
            ("'u1'", "'g1'", "NULL", "22004"),
            ("''", "'g1'", "1", "22023"),
            ("'u1'", "''", "1", "22023"),
            (too_long.as_str(), "'g1'", "1", "22001"),
            ("'u1'", too_long.as_str(), "1", "22001"),
            (wide.as_str(), "'g1'", "1", "22001"),
            ("'u1'", "'g1'", "-1", "22003"),
            ("'u1'", "'g1'", "256", "22003"),
            ("'u1'", "'g1'", "2147483647", "22003"),
        ];
        for (uid, channel_id, channel_type, expected) in cases {
            let call = format!("SELECT get_or_create_conversation({uid}, {channel_id}, {channel_type})");
            assert_eq!(sqlstate_of(&call), expected, "{call}");
        }
        assert_eq!(rows_inserted_by_this_transaction(), 1, "bad input inserted a row");
        assert_eq!(one::<i64>("SELECT currval('conversation_id_seq')"), id, "bad input drew a sequence value");
        assert_eq!(advisory_locks_held(), 0);
    }

    #[pg_test]
    fn the_byte_limit_itself_is_accepted() {
        let at_limit = "x".repeat(255);
        let found: i64 =
            Spi::get_one_with_args("SELECT count(*) FROM get_or_create_conversation($1, $1, 255)", &[at_limit.as_str().into()])
                .unwrap()
                .unwrap();
        assert_eq!(found, 1);
    }

    #[pg_test]
    fn error_messages_say_what_is_wrong() {
        assert_eq!(
            error_of("SELECT get_or_create_conversation('u1', repeat('x', 300), 1)"),
            "22001: channel_id is 300 bytes long; the limit is 255 bytes"
        );
        assert_eq!(
            error_of("SELECT get_or_create_conversation('u1', 'g1', 256)"),
            "22003: channel_type 256 is out of range: it must be between 0 and 255"
        );
    }

    #[pg_test]
    fn lock_key_is_the_documented_hash() {
        assert_eq!(one::<i32>("SELECT conversation_lock_key('u1', 'g1', 2)"), 0xaccf_b043_u32 as i32);
        assert_eq!(sqlstate_of("SELECT conversation_lock_key('u1', 'g1', 999)"), "22003");
    }

    #[pg_test]
    fn the_callers_search_path_cannot_redirect_it() {
        // A decoy table first on the path: an unqualified name in our SQL would land in it.
        Spi::run(
            "CREATE SCHEMA decoy;
             CREATE TABLE decoy.conversation (LIKE public.conversation);
             SET LOCAL search_path = decoy, public",
        )
        .unwrap();
        let created: i64 = one("SELECT id FROM public.get_or_create_conversation('u1', 'g1', 1)");
        let found: i64 = one("SELECT id FROM public.get_or_create_conversation('u1', 'g1', 1)");
        assert_eq!(created, found);
        // The pinned path is gone when the call returns: unqualified names find the decoy again.
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation"), 0);
        Spi::run("SET LOCAL search_path = ''").unwrap();
        one::<i64>("SELECT id FROM public.get_or_create_conversation('u2', 'g1', 1)");
        assert_eq!(one::<i64>("SELECT count(*) FROM decoy.conversation"), 0);
        assert_eq!(one::<i64>("SELECT count(*) FROM public.conversation"), 2);
    }

    #[pg_test]
    fn the_functions_run_as_invoker() {
        let (functions, definers) = Spi::get_two::<i64, i64>(
            "SELECT count(*), count(*) FILTER (WHERE p.prosecdef)
             FROM pg_proc AS p
             JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
             JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'pg_conversation'",
        )
        .unwrap();
        assert!(functions.unwrap() >= 13, "the extension's functions were not found");
        assert_eq!(definers, Some(0));
    }

    #[pg_test]
    fn the_table_is_dumped_with_its_sequence() {
        let dumped: i64 = one("SELECT cardinality(extconfig) FROM pg_extension WHERE extname = 'pg_conversation'");
        assert_eq!(dumped, 4); // and the clock (src/stamp.rs) and the channel rows (0.9.0)
    }

    // ---- batches (src/batch.rs)

    /// The last id this session drew (other tests draw from the same sequence at the same time).
    fn last_id_this_session_drew() -> i64 {
        one("SELECT currval('conversation_id_seq')")
    }

    #[pg_test]
    fn a_batch_returns_one_row_per_distinct_key_at_its_first_position() {
        let rows: String = one("SELECT string_agg(input_position || ':' || uid, ' ' ORDER BY input_position)
             FROM get_or_create_conversations('g1', 2, ARRAY['b', 'a', 'b', 'c', 'a'])");
        assert_eq!(rows, "1:b 2:a 4:c");
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation"), 3);
        // The same keys again, through the jsonb form: the same ids, nothing new.
        let last = last_id_this_session_drew();
        let same: i64 = one(r#"SELECT count(*) FROM get_or_create_conversations(
                   '[{"uid": "c", "channel_id": "g1", "channel_type": 2},
                     {"uid": "a", "channel_id": "g1", "channel_type": 2}]') AS b
               JOIN conversation AS c USING (id, uid, channel_id, channel_type)"#);
        assert_eq!(same, 2);
        assert_eq!(last_id_this_session_drew(), last, "existing keys drew sequence values");
        assert_eq!(rows_inserted_by_this_transaction(), 3);
    }

    #[pg_test]
    fn a_batch_returns_the_same_rows_as_single_calls() {
        one::<i64>("SELECT id FROM get_or_create_conversation('u2', 'g2', 1)");
        let mismatches: i64 = one(r#"SELECT count(*) FROM get_or_create_conversations(
                   '[{"uid": "u1", "channel_id": "g1____cmd", "channel_type": 1},
                     {"uid": "u2", "channel_id": "g2", "channel_type": 1}]') AS b
               WHERE (b.id, b.uid, b.channel_id, b.channel_type, b.type, b.unread_count, b.readed_to_msg_seq,
                      b.last_msg_seq, b.deleted_at_msg_seq, b.created_at, b.updated_at)
                     IS DISTINCT FROM
                     (SELECT (c.id, c.uid, c.channel_id, c.channel_type, c.type, c.unread_count, c.readed_to_msg_seq,
                              c.last_msg_seq, c.deleted_at_msg_seq, c.created_at, c.updated_at)
                      FROM get_or_create_conversation(b.uid, b.channel_id, b.channel_type) AS c)"#);
        assert_eq!(mismatches, 0);
        assert_eq!(one::<i16>("SELECT type FROM conversation WHERE channel_id = 'g1____cmd'"), 2);
    }

    #[pg_test]
    fn an_empty_batch_returns_nothing() {
        assert_eq!(one::<i64>("SELECT count(*) FROM get_or_create_conversations('g1', 2, '{}')"), 0);
        assert_eq!(one::<i64>("SELECT count(*) FROM get_or_create_conversations('[]')"), 0);
    }

    #[pg_test]
    fn bad_batches_get_their_sqlstate_name_the_element_and_write_nothing() {
        let cases = [
            ("SELECT get_or_create_conversations(NULL::jsonb)", "22004: keys must not be NULL"),
            (r#"SELECT get_or_create_conversations('{"uid": "u"}')"#, "22023: keys must be a JSON array of keys"),
            (
                r#"SELECT get_or_create_conversations('[{"uid": "u", "channel_id": "g", "channel_type": 1}, 5]')"#,
                r#"22023: keys element 2: invalid type: integer `5`, expected an object {"uid": ..., "channel_id": ..., "channel_type": ...}"#,
            ),
            (r#"SELECT get_or_create_conversations('[{"uid": "u", "channel_type": 1}]')"#, "22023: keys element 1: has no channel_id"),
            (
                r#"SELECT get_or_create_conversations('[{"uid": "u", "channel_id": "g", "channel_type": 1.5}]')"#,
                "22023: keys element 1: channel_type must be an integer",
            ),
            (
                r#"SELECT get_or_create_conversations('[{"uid": "u", "channelId": "g", "channel_id": "g", "channel_type": 1}]')"#,
                "22023: keys element 1: unknown field `channelId`, expected one of `uid`, `channel_id`, `channel_type`",
            ),
            (
                r#"SELECT get_or_create_conversations('[{"uid": "u", "channel_id": "g", "channel_type": 1}, {"uid": null, "channel_id": "g", "channel_type": 1}]')"#,
                "22004: keys element 2: uid must not be NULL",
            ),
            (
                r#"SELECT get_or_create_conversations('[{"uid": "u", "channel_id": "g", "channel_type": 300}]')"#,
                "22003: keys element 1: channel_type 300 is out of range: it must be between 0 and 255",
            ),
            ("SELECT get_or_create_conversations('g', 1, ARRAY['a', NULL])", "22004: uids element 2: uid must not be NULL"),
            ("SELECT get_or_create_conversations('g', 1, ARRAY['a', ''])", "22023: uids element 2: uid must not be empty"),
            ("SELECT get_or_create_conversations('g', 1, NULL)", "22004: uids must not be NULL"),
            ("SELECT get_or_create_conversations(NULL, 1, '{}')", "22004: channel_id must not be NULL"),
            (
                "SELECT get_or_create_conversations('g', 999, ARRAY['a'])",
                "22003: channel_type 999 is out of range: it must be between 0 and 255",
            ),
            (
                "SELECT get_or_create_conversations('g', 1, array_fill('u'::text, ARRAY[10001]))",
                "54000: uids holds 10001 keys; one call takes at most 10000",
            ),
        ];
        for (statement, expected) in cases {
            assert_eq!(outcome_of(statement).as_deref(), Some(expected), "{statement}");
        }
        assert_eq!(rows_inserted_by_this_transaction(), 0, "a refused batch inserted rows");
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation"), 0);
    }

    #[pg_test]
    fn a_batch_at_the_limit_creates_every_key() {
        let created: i64 = one("SELECT count(*) FROM get_or_create_conversations('big', 2,
                 ARRAY(SELECT 'member' || i FROM generate_series(1, 10000) AS i))");
        assert_eq!(created, 10_000);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE channel_id = 'big'"), 10_000);
        assert_eq!(advisory_locks_held(), 0);
    }

    // ---- message arrival (src/message.rs)

    fn state_of(uid: &str) -> String {
        state_in("g1", uid)
    }

    fn state_in(channel_id: &str, uid: &str) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT format('last=%s read=%s unread=%s', last_msg_seq, readed_to_msg_seq, unread_count)
             FROM conversation WHERE uid = $1 AND channel_id = $2 AND channel_type = 2",
            &[uid.into(), channel_id.into()],
        )
        .unwrap()
        .expect("no such conversation")
    }

    fn arrived(seq: i64, sender: &str) -> i32 {
        Spi::get_one_with_args::<i32>(
            "SELECT conversation_message_arrived('g1', 2, ARRAY['alice', 'bob', 'carol'], $1, $2)",
            &[seq.into(), sender.into()],
        )
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn a_message_creates_members_and_counts_unread_for_all_but_the_sender() {
        assert_eq!(arrived(1, "alice"), 3);
        assert_eq!(state_of("alice"), "last=1 read=1 unread=0");
        assert_eq!(state_of("bob"), "last=1 read=0 unread=1");
        assert_eq!(arrived(2, "bob"), 3);
        assert_eq!(state_of("alice"), "last=2 read=1 unread=1");
        assert_eq!(state_of("bob"), "last=2 read=2 unread=0");
        assert_eq!(state_of("carol"), "last=2 read=0 unread=2");
    }

    #[pg_test]
    fn a_message_delivered_twice_or_late_changes_nothing() {
        assert_eq!(arrived(5, "alice"), 3);
        let before: String = one("SELECT string_agg(c::text, ' ' ORDER BY uid) FROM conversation AS c");
        assert_eq!(arrived(5, "alice"), 0, "a redelivery advanced conversations");
        assert_eq!(arrived(3, "bob"), 0, "an older message advanced conversations");
        let after: String = one("SELECT string_agg(c::text, ' ' ORDER BY uid) FROM conversation AS c");
        assert_eq!(before, after);
    }

    #[pg_test]
    fn a_message_advances_the_members_behind_it_and_only_them() {
        // A channel of its own: pg_tests run at once, and another test's uncommitted rows of
        // g1, made in another order, would deadlock with these.
        let message = |members: &str, seq: i64, sender: &str| -> i32 {
            one(&format!("SELECT conversation_message_arrived('behind', 2, ARRAY[{members}], {seq}, {sender})"))
        };
        let state = |uid: &str| state_in("behind", uid);
        assert_eq!(message("'alice', 'bob', 'carol'", 5, "'alice'"), 3);
        assert_eq!(message("'erin'", 3, "NULL"), 1);
        // Past it: alice, bob, carol (5). Behind it: erin (3), and dave, who has no row yet.
        assert_eq!(message("'carol', 'dave', 'alice', 'erin', 'bob'", 5, "'bob'"), 2);
        assert_eq!(state("dave"), "last=5 read=0 unread=1");
        assert_eq!(state("erin"), "last=5 read=0 unread=2");
        assert_eq!(state("bob"), "last=5 read=0 unread=1", "a member past the message was advanced again");
        assert_eq!(state("alice"), "last=5 read=5 unread=0");
    }

    #[pg_test]
    fn a_system_message_without_sender_counts_for_everyone() {
        let advanced: i32 = one("SELECT conversation_message_arrived('g1', 2, ARRAY['alice', 'bob'], 1, NULL)");
        assert_eq!(advanced, 2);
        assert_eq!(state_of("alice"), "last=1 read=0 unread=1");
    }

    #[pg_test]
    fn a_member_who_already_read_past_the_message_gets_no_unread() {
        // The members made first, in the one order every message test makes them in (pg_tests
        // run at once: bob made alone first, then the others, could deadlock with another test).
        arrived(5, "alice");
        one::<i64>("SELECT id FROM conversation_mark_read('bob', 'g1', 2, 10)");
        arrived(7, "alice");
        assert_eq!(state_of("bob"), "last=7 read=10 unread=0");
    }

    #[pg_test]
    fn bad_messages_are_refused_and_write_nothing() {
        let cases = [
            ("SELECT conversation_message_arrived('g1', 2, ARRAY['a'], 0, 'a')", "22023: message_seq must be at least 1, not 0"),
            ("SELECT conversation_message_arrived('g1', 2, ARRAY['a'], NULL, 'a')", "22004: message_seq must not be NULL"),
            ("SELECT conversation_message_arrived('g1', 2, NULL, 1, 'a')", "22004: member_uids must not be NULL"),
            ("SELECT conversation_message_arrived('g1', 2, ARRAY['a', ''], 1, 'a')", "22023: member_uids element 2: uid must not be empty"),
            ("SELECT conversation_message_arrived('', 2, ARRAY['a'], 1, 'a')", "22023: channel_id must not be empty"),
        ];
        for (statement, expected) in cases {
            assert_eq!(outcome_of(statement).as_deref(), Some(expected), "{statement}");
        }
        assert_eq!(rows_inserted_by_this_transaction(), 0);
    }

    // ---- read state (src/read_state.rs)

    fn mark_read(uid: &str, seq: i64) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT format('last=%s read=%s unread=%s', last_msg_seq, readed_to_msg_seq, unread_count)
             FROM conversation_mark_read($1, 'g1', 2, $2)",
            &[uid.into(), seq.into()],
        )
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn a_read_position_only_moves_forward_and_unread_follows_it() {
        for seq in 1..=10 {
            arrived(seq, "alice");
        }
        assert_eq!(state_of("bob"), "last=10 read=0 unread=10");
        assert_eq!(mark_read("bob", 6), "last=10 read=6 unread=4");
        assert_eq!(mark_read("bob", 3), "last=10 read=6 unread=4", "the read position went back");
        assert_eq!(mark_read("bob", 10), "last=10 read=10 unread=0");
        assert_eq!(mark_read("bob", 8), "last=10 read=10 unread=0");
    }

    #[pg_test]
    fn reads_in_any_order_end_in_the_same_state() {
        for seq in 1..=20 {
            arrived(seq, "alice");
        }
        for seq in [12, 5, 17, 9] {
            mark_read("bob", seq);
        }
        for seq in [9, 17, 5, 12] {
            mark_read("carol", seq);
        }
        assert_eq!(state_of("bob"), "last=20 read=17 unread=3");
        assert_eq!(state_of("carol"), state_of("bob"));
    }

    #[pg_test]
    fn a_read_of_a_missing_conversation_creates_it() {
        assert_eq!(mark_read("dave", 4), "last=0 read=4 unread=0");
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE uid = 'dave'"), 1);
    }

    #[pg_test]
    fn bad_reads_are_refused_and_write_nothing() {
        let cases = [
            ("SELECT conversation_mark_read('u', 'g', 1, 0)", "22023: read_to_seq must be at least 1, not 0"),
            ("SELECT conversation_mark_read('u', 'g', 1, NULL)", "22004: read_to_seq must not be NULL"),
            ("SELECT conversation_mark_read(NULL, 'g', 1, 5)", "22004: uid must not be NULL"),
            ("SELECT conversation_mark_read('u', 'g', 256, 5)", "22003: channel_type 256 is out of range: it must be between 0 and 255"),
        ];
        for (statement, expected) in cases {
            assert_eq!(outcome_of(statement).as_deref(), Some(expected), "{statement}");
        }
        assert_eq!(rows_inserted_by_this_transaction(), 0);
    }

    /// A read far past the last message would make every later message arrive already read:
    /// refused beyond MAX_READ_AHEAD (1000), with nothing written, not even the conversation a
    /// read of a missing one would create.
    #[pg_test]
    fn a_read_far_ahead_of_the_last_message_is_refused() {
        for seq in 1..=5 {
            arrived(seq, "alice");
        }
        let refused = [
            ("SELECT conversation_mark_read('bob', 'g1', 2, 9223372036854775807)", "read_to_seq 9223372036854775807", "(5)"),
            ("SELECT conversation_mark_read('bob', 'g1', 2, 1006)", "read_to_seq 1006", "(5)"),
            ("SELECT conversation_clear('bob', 'g1', 2, 9223372036854775807)", "up_to_msg_seq 9223372036854775807", "(5)"),
            ("SELECT conversation_mark_read('dave', 'g1', 2, 1001)", "read_to_seq 1001", "(0)"),
        ];
        for (statement, what, last) in refused {
            let expected = format!("22023: {what} is more than 1000 ahead of the conversation's last message {last}");
            assert_eq!(outcome_of(statement).as_deref(), Some(expected.as_str()), "{statement}");
        }
        assert_eq!(state_of("bob"), "last=5 read=0 unread=5");
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE uid = 'dave'"), 0, "a refused read created a conversation");
        // Up to 1000 ahead is a read whose message is still being delivered: kept, and that
        // message arrives already read.
        assert_eq!(mark_read("bob", 1005), "last=5 read=1005 unread=0");
        arrived(6, "alice");
        assert_eq!(state_of("bob"), "last=6 read=1005 unread=0");
        assert_eq!(
            Spi::get_one::<String>("SELECT format('deleted=%s read=%s', deleted_at_msg_seq, readed_to_msg_seq) FROM conversation_clear('carol', 'g1', 2, 1006)")
                .unwrap()
                .unwrap(),
            "deleted=1006 read=1006"
        );
    }

    // ---- counters (src/stats.rs); the test cluster preloads the library

    fn counter(name: &str) -> i64 {
        one(&format!("SELECT {name} FROM conversation_stats"))
    }

    // Exact counts are in tests/regress/sql/stats.sql: here other tests share the server and
    // its counters, so only a lower bound holds.
    #[pg_test]
    fn the_test_cluster_preloads_and_counts() {
        assert!(one::<bool>("SELECT preloaded FROM conversation_stats"));
        let hits = counter("hits");
        one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)");
        one::<i64>("SELECT id FROM get_or_create_conversation('u1', 'g1', 1)");
        assert!(counter("hits") - hits >= 1);
    }

    #[pg_test]
    fn only_superusers_may_reset_the_counters() {
        Spi::run("CREATE ROLE pgconv_monitor; GRANT USAGE ON SCHEMA tests TO pgconv_monitor; SET LOCAL ROLE pgconv_monitor").unwrap();
        assert_eq!(sqlstate_of("SELECT conversation_stats_reset()"), "42501");
        assert_eq!(sqlstate_of("SELECT * FROM conversation_stats"), "00000");
    }
}
