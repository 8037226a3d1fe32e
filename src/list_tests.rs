//! The conversation list inside the server: stamps, lists, positions, hide, clear and the badge.
//! Each #[pg_test] is one transaction: rows "written long ago" are inserted with an old version
//! of their own (the trigger leaves them as given: `stamp_catalog::for_tests`); what the test's
//! transaction writes is stamped with its own id, which its positions count as in flight. Positions across
//! transactions that commit out of order are tested by the isolation spec list_sync and the
//! race test's sync mode.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::list::stamp::for_tests::first_writer_adds;
    use crate::relation::stamp_catalog::for_tests::{rows_as_given, stamp_trigger_frozen};
    use crate::tests::tests::{error_of, one, sqlstate_of};

    /// A version written long ago by this cluster (transaction id 10 of its generation: the one
    /// in the clock, or the one its first write will add).
    const OLD: &str = "(COALESCE((SELECT max(k.generation) FROM conversation_clock AS k
                                  WHERE k.system_identifier = (SELECT system_identifier FROM pg_control_system())
                                    AND k.timeline = (SELECT timeline_id FROM pg_control_checkpoint())),
                                 (SELECT COALESCE(max(k.generation) + 1, 0) FROM conversation_clock AS k))::int8 << 48 | 10)";

    /// `count` conversations of `uid` written long ago, channels c01.. (odd ones CMD), with
    /// versions OLD + 1 .. OLD + count: c01 is the oldest.
    fn old_conversations(uid: &str, count: i32) {
        rows_as_given(|| {
            Spi::run_with_args(
                &format!(
                    "INSERT INTO conversation (uid, channel_id, channel_type, version)
                     SELECT $1, format('c%s', lpad(i::text, 2, '0')) || CASE WHEN i % 2 = 1 THEN '____cmd' ELSE '' END, 1, {OLD} + i
                     FROM generate_series(1, $2) AS i"
                ),
                &[uid.into(), count.into()],
            )
            .unwrap()
        });
    }

    /// The channels a list call returns, in order, and the position after its last row.
    fn list(arguments: &str) -> (Vec<String>, Option<String>) {
        let rows = Spi::connect(|client| {
            client
                .select(&format!("SELECT channel_id, position FROM conversation_list({arguments})"), None, &[])
                .unwrap()
                .map(|row| (row.get::<String>(1).unwrap().unwrap(), row.get::<String>(2).unwrap().unwrap()))
                .collect::<Vec<_>>()
        });
        let last = rows.last().map(|(_, position)| position.clone());
        (rows.into_iter().map(|(channel, _)| channel).collect(), last)
    }

    /// For a test that changes the table's indexes or the table itself: the table to itself first,
    /// so that no other test (each a transaction of its own, run at once) holds part of what it
    /// changes while waiting for the rest (a deadlock).
    fn table_to_myself() {
        Spi::run("LOCK TABLE conversation IN ACCESS EXCLUSIVE MODE").unwrap();
        Spi::run("LOCK TABLE conversation_departure IN ACCESS EXCLUSIVE MODE").unwrap();
    }

    fn channels(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    // ---- the change stamp (src/stamp.rs)

    #[pg_test]
    fn every_insert_and_update_is_stamped_with_its_transaction() {
        Spi::run("SELECT get_or_create_conversation('stamped', 'g1', 1)").unwrap();
        let expected = "(SELECT k.generation::int8 << 48 | pg_current_xact_id()::text::int8 FROM conversation_clock AS k
              WHERE k.system_identifier = (SELECT system_identifier FROM pg_control_system()))";
        assert!(one::<bool>(&format!("SELECT version = {expected} FROM conversation WHERE uid = 'stamped'")));
        // Any writer's update: the application's own SQL too.
        Spi::run("UPDATE conversation SET version = 5, unread_count = 3 WHERE uid = 'stamped'").unwrap();
        assert!(one::<bool>(&format!("SELECT version = {expected} FROM conversation WHERE uid = 'stamped'")));
        // An insert that brings a version is stamped too (a restore, an ORM saving every column,
        // INSERT ... SELECT from an archive carry another history's number), and so is a write
        // under session_replication_role = replica (pg_restore --disable-triggers, replication).
        Spi::run("INSERT INTO conversation (uid, channel_id, channel_type, version) VALUES ('stampedb', 'g1', 1, 77)").unwrap();
        assert!(one::<bool>(&format!("SELECT version = {expected} FROM conversation WHERE uid = 'stampedb'")));
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        Spi::run("INSERT INTO conversation (uid, channel_id, channel_type, version) VALUES ('stampedc', 'g1', 1, 78)").unwrap();
        Spi::run("UPDATE conversation SET version = 0 WHERE uid = 'stamped'").unwrap();
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        assert!(one::<bool>(&format!("SELECT bool_and(version = {expected}) FROM conversation WHERE uid IN ('stamped', 'stampedc')")));
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation_clock"), 1);
    }

    /// The clock is kept as its owner: a role that may write conversations needs nothing on it,
    /// even to add this cluster's row (the first write after a restore or an upgrade).
    #[pg_test]
    fn writers_and_readers_need_no_privilege_on_the_clock() {
        Spi::run("DELETE FROM conversation_clock").unwrap();
        Spi::run(
            "CREATE ROLE pgconv_writer;
             GRANT USAGE ON SCHEMA tests TO pgconv_writer;
             GRANT SELECT, INSERT, UPDATE, DELETE ON conversation TO pgconv_writer;
             GRANT USAGE ON SEQUENCE conversation_id_seq TO pgconv_writer",
        )
        .unwrap();
        Spi::run("SET LOCAL ROLE pgconv_writer").unwrap();
        let outcomes = [
            sqlstate_of("SELECT * FROM conversation_list('keeper')"),
            sqlstate_of("SELECT get_or_create_conversation('keeper', 'g1', 1)"),
            sqlstate_of("SELECT conversation_hide('keeper', 'g1', 1)"),
            sqlstate_of("SELECT * FROM conversation_list('keeper', NULL, NULL, 1)"),
            sqlstate_of("SELECT count(*) FROM conversation_clock"),
            // A delete records its departure as the departure table's owner.
            sqlstate_of("DELETE FROM conversation WHERE uid = 'keeper'"),
            sqlstate_of("SELECT count(*) FROM conversation_departure"),
        ];
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(outcomes, ["00000", "00000", "00000", "00000", "42501", "00000", "42501"]);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation_departure WHERE uid = 'keeper'"), 1);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation_clock"), 1);
    }

    /// First writers of a history add its clock row without waiting for each other, so each must
    /// add the same generation: one that finds another's row of its history (committed after it
    /// looked) takes that row's generation. It took the next after every row: a second, greater
    /// generation for one history, and a sync on it that never went quiet (tests/citus.sh, the
    /// sync race on a cluster updated from 0.4.0).
    #[pg_test]
    fn first_writers_of_a_history_add_one_generation() {
        let schema = one::<pg_sys::Oid>("SELECT relnamespace FROM pg_class WHERE oid = 'conversation_clock'::regclass");
        let this_history = "(SELECT system_identifier FROM pg_control_system()), (SELECT timeline_id FROM pg_control_checkpoint())";
        Spi::run("DELETE FROM conversation_clock").unwrap();
        // Another history at 4 (a restored cluster's, a timeline before a promotion), this one's
        // at 5: a first writer that finds it takes 5.
        Spi::run(&format!(
            "INSERT INTO conversation_clock (system_identifier, timeline, generation) VALUES (1, 1, 4), ({this_history}, 5)"
        ))
        .unwrap();
        assert_eq!(first_writer_adds(schema), 5);
        // One that finds none: the next after every other history's.
        Spi::run("DELETE FROM conversation_clock WHERE system_identifier <> 1").unwrap();
        assert_eq!(first_writer_adds(schema), 5);
        // This cluster's row from before 0.7.0 (no timeline) is another history.
        Spi::run("UPDATE conversation_clock SET timeline = NULL, generation = 7 WHERE system_identifier <> 1").unwrap();
        assert_eq!(first_writer_adds(schema), 8);
        assert_eq!(
            one::<i64>("SELECT count(DISTINCT generation) FROM conversation_clock WHERE timeline IS NOT NULL AND system_identifier <> 1"),
            1
        );
    }

    #[pg_test]
    fn the_stamp_is_refused_anywhere_but_before_each_row() {
        Spi::run("CREATE TABLE elsewhere (version bigint, note text)").unwrap();
        Spi::run("CREATE TRIGGER after_stamp AFTER INSERT ON elsewhere FOR EACH ROW EXECUTE FUNCTION conversation_stamp()").unwrap();
        assert_eq!(sqlstate_of("INSERT INTO elsewhere VALUES (0, 'x')"), "39P01");
        Spi::run("DROP TRIGGER after_stamp ON elsewhere").unwrap();
        Spi::run("CREATE TRIGGER delete_stamp BEFORE DELETE ON elsewhere FOR EACH STATEMENT EXECUTE FUNCTION conversation_stamp()")
            .unwrap();
        Spi::run("ALTER TABLE elsewhere DISABLE TRIGGER delete_stamp").unwrap();
        Spi::run("INSERT INTO elsewhere VALUES (0, 'x')").unwrap();
        Spi::run("ALTER TABLE elsewhere ENABLE TRIGGER delete_stamp").unwrap();
        assert_eq!(sqlstate_of("DELETE FROM elsewhere"), "39P01");
        // A row trigger on DELETE records a departure: a table without a conversation's key has none
        // to record, and nothing is deleted.
        Spi::run("DROP TRIGGER delete_stamp ON elsewhere").unwrap();
        Spi::run("CREATE TRIGGER delete_stamp BEFORE DELETE ON elsewhere FOR EACH ROW EXECUTE FUNCTION conversation_stamp()").unwrap();
        assert!(error_of("DELETE FROM elsewhere").starts_with("55000: table conversation cannot be used"));
        assert_eq!(one::<i64>("SELECT count(*) FROM elsewhere"), 1);
        Spi::run("CREATE TABLE versionless (note text)").unwrap();
        Spi::run("CREATE TRIGGER stamp BEFORE INSERT ON versionless FOR EACH ROW EXECUTE FUNCTION conversation_stamp()").unwrap();
        assert!(error_of("INSERT INTO versionless VALUES ('x')").starts_with("55000: table conversation cannot be used"));
        assert_eq!(one::<i64>("SELECT count(*) FROM versionless"), 0);
    }

    /// conversation_channel's rows (0.9.0) are stamped as conversations are, whatever version a
    /// writer brings; a channel row deleted is no departure (it was in no list). Any trigger
    /// argument but 'channel' is a misuse.
    #[pg_test]
    fn channel_rows_are_stamped_and_leave_no_departure() {
        Spi::run("INSERT INTO conversation_channel (channel_id, channel_type, last_msg_seq, version) VALUES ('stamped-channel', 2, 5, 42)")
            .unwrap();
        one::<i64>("SELECT id FROM get_or_create_conversation('stamped-member', 'stamped-channel', 2)");
        let stamp = one::<i64>("SELECT version FROM conversation WHERE uid = 'stamped-member'");
        let channel_version = "SELECT version FROM conversation_channel WHERE channel_id = 'stamped-channel'";
        assert_eq!(one::<i64>(channel_version), stamp);
        Spi::run("UPDATE conversation_channel SET last_msg_seq = 6, version = 7 WHERE channel_id = 'stamped-channel'").unwrap();
        assert_eq!(one::<i64>(channel_version), stamp);
        Spi::run("DELETE FROM conversation_channel WHERE channel_id = 'stamped-channel'").unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation_channel WHERE channel_id = 'stamped-channel'"), 0);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation_departure WHERE channel_id = 'stamped-channel'"), 0);
        Spi::run("CREATE TABLE channel_like (version bigint)").unwrap();
        Spi::run("CREATE TRIGGER stamp BEFORE INSERT ON channel_like FOR EACH ROW EXECUTE FUNCTION conversation_stamp('group')").unwrap();
        assert_eq!(sqlstate_of("INSERT INTO channel_like VALUES (0)"), "39P01");
        assert_eq!(one::<i64>("SELECT count(*) FROM channel_like"), 0);
    }

    /// A stamp that skips some writes is no stamp: a partition whose trigger is disabled, or a
    /// trigger with a WHEN condition or an UPDATE OF list, and the list refuses (55000).
    #[pg_test]
    fn the_list_refuses_a_stamp_that_skips_some_writes() {
        table_to_myself();
        old_conversations("parted", 3);
        Spi::run("SELECT count(*) FROM conversation_partition(4)").unwrap();
        assert_eq!(list("'parted'").0.len(), 3);
        let partition: String = one("SELECT tableoid::regclass::text FROM conversation WHERE uid = 'parted' LIMIT 1");
        let other: String = one(&format!(
            "SELECT c.relname::text FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
                                          WHERE i.inhparent = 'conversation'::regclass AND c.relname <> '{partition}' LIMIT 1"
        ));
        // Any partition, not only the one holding the user's rows: the user's next row may land there.
        Spi::run(&format!("ALTER TABLE {other} DISABLE TRIGGER conversation_stamp")).unwrap();
        assert_eq!(sqlstate_of("SELECT * FROM conversation_list('parted')"), "55000");
        // Enabled for ordinary sessions only (as pg_restore --disable-triggers leaves it): writes
        // under session_replication_role = replica, and logical replication's, would go unstamped.
        Spi::run(&format!("ALTER TABLE {other} ENABLE TRIGGER conversation_stamp")).unwrap();
        assert!(error_of("SELECT * FROM conversation_list('parted')").contains("ENABLE ALWAYS"));
        Spi::run(&format!("ALTER TABLE {other} ENABLE ALWAYS TRIGGER conversation_stamp")).unwrap();
        assert_eq!(list("'parted'").0.len(), 3);
        for condition in ["WHEN (NEW.unread_count > 0)", ""] {
            let events = if condition.is_empty() { "INSERT OR UPDATE OF unread_count" } else { "INSERT OR UPDATE" };
            Spi::run(&format!(
                "DROP TRIGGER conversation_stamp ON conversation;
                 CREATE TRIGGER conversation_stamp BEFORE {events} ON conversation FOR EACH ROW {condition}
                     EXECUTE FUNCTION conversation_stamp()"
            ))
            .unwrap();
            assert_eq!(sqlstate_of("SELECT * FROM conversation_list('parted')"), "55000", "{events} {condition}");
        }
    }

    /// The channel table's rows date the memberships of large channels: a stamp trigger there that
    /// skips writes is refused as on the conversation table (55000).
    #[pg_test]
    fn the_list_refuses_a_channel_table_whose_writes_are_not_stamped() {
        table_to_myself();
        Spi::run("LOCK TABLE conversation_channel IN ACCESS EXCLUSIVE MODE").unwrap();
        old_conversations("chan-stamped", 2);
        assert_eq!(list("'chan-stamped'").0.len(), 2);
        Spi::run("ALTER TABLE conversation_channel DISABLE TRIGGER conversation_stamp").unwrap();
        assert_eq!(sqlstate_of("SELECT * FROM conversation_list('chan-stamped')"), "55000");
        Spi::run("ALTER TABLE conversation_channel ENABLE ALWAYS TRIGGER conversation_stamp").unwrap();
        assert_eq!(list("'chan-stamped'").0.len(), 2);
    }

    // ---- the list (src/list.rs)

    #[pg_test]
    fn a_list_is_newest_change_first_of_one_type_or_all() {
        old_conversations("lister", 5);
        assert_eq!(list("'lister'").0, channels(&["c05____cmd", "c04", "c03____cmd", "c02", "c01____cmd"]));
        assert_eq!(list("'lister', 1").0, channels(&["c04", "c02"]));
        assert_eq!(list("'lister', 2").0, channels(&["c05____cmd", "c03____cmd", "c01____cmd"]));
        assert_eq!(list("'lister', 3").0, channels(&[]));
        assert_eq!(list("'nobody'").0, channels(&[]));
        // A change moves a conversation to the top.
        Spi::run("SELECT conversation_mark_read('lister', 'c02', 1, 4)").unwrap();
        assert_eq!(list("'lister', 1").0, channels(&["c02", "c04"]));
        // Rows not changed since before 0.5.0 (version 0) come last, by updated_at.
        Spi::run(
            "INSERT INTO conversation (uid, channel_id, channel_type, updated_at) VALUES
                 ('listerb', 'legacy-old', 1, now() - interval '2 days'), ('listerb', 'legacy-new', 1, now() - interval '1 day')",
        )
        .unwrap();
        // As before 0.5.0 (without the trigger; a table lock would hold up the other tests).
        rows_as_given(|| Spi::run("UPDATE conversation SET version = 0 WHERE uid = 'listerb'").unwrap());
        Spi::run("SELECT get_or_create_conversation('listerb', 'new', 1)").unwrap();
        assert_eq!(list("'listerb'").0, channels(&["new", "legacy-new", "legacy-old"]));
    }

    #[pg_test]
    fn pages_follow_each_other_without_gap_or_repeat() {
        old_conversations("pager", 7);
        let mut seen = Vec::new();
        let mut position: Option<String> = None;
        for pages in 1.. {
            let arguments = match &position {
                None => "'pager', NULL, NULL, 3".to_string(),
                Some(position) => format!("'pager', NULL, '{position}', 3"),
            };
            let (page, last) = list(&arguments);
            assert!(page.len() <= 3);
            seen.extend(page.clone());
            if page.len() < 3 || pages > 5 {
                break;
            }
            position = last;
        }
        assert_eq!(seen, channels(&["c07____cmd", "c06", "c05____cmd", "c04", "c03____cmd", "c02", "c01____cmd"]));
        // Every row carries the position after it: resuming from the second row gives the rest.
        let second: String = one("SELECT position FROM conversation_list('pager', 1) OFFSET 1 LIMIT 1");
        assert_eq!(list(&format!("'pager', 1, '{second}'")).0, channels(&["c02"]));
    }

    #[pg_test]
    fn a_position_brings_every_change_since_hidden_ones_too() {
        old_conversations("syncer", 6);
        let (all, position) = list("'syncer', 1");
        assert_eq!(all, channels(&["c06", "c04", "c02"]));
        let position = position.unwrap();
        // Nothing changed: nothing comes back.
        assert_eq!(list(&format!("'syncer', 1, '{position}'")).0, channels(&[]));
        // This transaction changes three, each another way; they come back, newest first.
        Spi::run("SELECT conversation_message_arrived('c02', 1, ARRAY['syncer'], 9, NULL)").unwrap();
        Spi::run("SELECT conversation_hide('syncer', 'c04', 1)").unwrap();
        Spi::run("UPDATE conversation SET unread_count = 0 WHERE uid = 'syncer' AND channel_id = 'c06'").unwrap();
        Spi::run("SELECT get_or_create_conversation('syncer', 'c08', 1)").unwrap();
        let (changed, _) = list(&format!("'syncer', 1, '{position}'"));
        let mut sorted = changed.clone();
        sorted.sort();
        assert_eq!(sorted, channels(&["c02", "c04", "c06", "c08"]));
        assert!(one::<bool>(&format!("SELECT hidden FROM conversation_list('syncer', 1, '{position}') WHERE channel_id = 'c04'")));
        // A list from the start leaves the hidden one out.
        assert!(!list("'syncer', 1").0.contains(&"c04".to_string()));
    }

    #[pg_test]
    fn a_pass_with_nothing_left_starts_the_next_at_once() {
        old_conversations("passer", 4);
        // A full page whose last row ended the pass... and rows that change before the next call.
        let (_, position) = list("'passer', 1, NULL, 1"); // c04, with more to come (c02)
        Spi::run("UPDATE conversation SET unread_count = 1 WHERE uid = 'passer' AND channel_id = 'c02'").unwrap();
        // c02 moved above the pass's cursor: nothing is left below it, so the next pass begins,
        // and brings c02 (changed since the pass's horizon).
        let (next, _) = list(&format!("'passer', 1, '{}', 1", position.unwrap()));
        assert_eq!(next, channels(&["c02"]));
    }

    #[pg_test]
    fn bad_list_arguments_get_their_sqlstate() {
        old_conversations("bad", 2);
        let (_, position) = list("'bad', 1");
        let position = position.unwrap();
        for (call, sqlstate) in [
            ("conversation_list(NULL)", "22004"),
            ("conversation_list('')", "22023"),
            ("conversation_list('bad', 40000)", "22003"),
            ("conversation_list('bad', 1, NULL, 0)", "22023"),
            ("conversation_list('bad', 1, NULL, 1001)", "22023"),
            ("conversation_list('bad', 1, NULL, NULL)", "22004"),
            ("conversation_list('bad', 1, 'not a position')", "22023"),
            ("conversation_list('bad', 1, '')", "22023"),
            ("conversation_list('bad', 1, repeat('1', 2000000))", "22023"),
            ("conversation_unread(NULL)", "22004"),
            ("conversation_unread('bad', -40000)", "22003"),
        ] {
            assert_eq!(sqlstate_of(&format!("SELECT * FROM {call}")), sqlstate, "{call}");
        }
        // Another list's position, another cluster's.
        assert!(error_of(&format!("SELECT * FROM conversation_list('bad', 2, '{position}')"))
            .starts_with("22023: position belongs to the list of type 1, not of type 2"));
        assert!(error_of(&format!("SELECT * FROM conversation_list('bad', NULL, '{position}')")).starts_with("22023"));
        let fields: Vec<&str> = position.split('/').collect();
        let database = fields[2].split(':').nth(1).expect("the database");
        let elsewhere = format!("{}/{}/12345:{database}/{}", fields[0], fields[1], fields[3..].join("/"));
        assert_eq!(sqlstate_of(&format!("SELECT * FROM conversation_list('bad', 1, '{elsewhere}')")), "72000");
        // Another database of this cluster: its rows are its own.
        let system_identifier = fields[2].split(':').next().expect("the system identifier");
        let other_database = format!("{}/{}/{system_identifier}:1/{}", fields[0], fields[1], fields[3..].join("/"));
        assert_eq!(sqlstate_of(&format!("SELECT * FROM conversation_list('bad', 1, '{other_database}')")), "72000");
    }

    /// The list reads a page's worth of index entries, not every conversation of the user.
    #[pg_test]
    fn a_page_reads_a_page_of_index_entries() {
        rows_as_given(|| {
            Spi::run(&format!(
                "INSERT INTO conversation (uid, channel_id, channel_type, version, unread_count, hidden)
                 SELECT 'big', 'c' || i, 1, {OLD} + i, i % 3, i % 10 = 0 FROM generate_series(1, 5000) AS i"
            ))
            .unwrap()
        });
        Spi::run("ANALYZE conversation").unwrap();
        let read = || -> i64 {
            // Index entries this transaction's scans of the list indexes read so far.
            one("SELECT COALESCE(sum(pg_stat_get_xact_tuples_returned(c.oid)), 0)::int8 FROM pg_class AS c
                 WHERE c.relname LIKE 'conversation_list%' AND c.relkind = 'i'")
        };
        let before = read();
        assert_eq!(list("'big', 1, NULL, 20").0.len(), 20);
        let page = read() - before;
        assert!(page <= 3 * 21, "a page of 20 read {page} index entries");
        let before = read();
        let unread: i64 = one("SELECT unread_count FROM conversation_unread('big', 1)");
        assert_eq!(unread, one::<i64>("SELECT sum(unread_count) FROM conversation WHERE uid = 'big' AND NOT hidden"));
        let badge = read() - before;
        let unread_rows: i64 = one("SELECT count(*) FROM conversation WHERE uid = 'big' AND unread_count > 0 AND NOT hidden");
        assert!(badge <= unread_rows + 1, "the badge read {badge} index entries for {unread_rows} unread conversations");
    }

    /// A sync from a position whose horizon saw little (a transaction open since long ago keeps its
    /// floor far back) reads the rows that changed, not every row written since the floor: below
    /// the ceiling, only the in-flight versions are read, each with a descent of its own.
    #[pg_test]
    fn a_sync_reads_only_the_versions_in_flight_below_the_ceiling() {
        table_to_myself();
        // 5,000 rows written by transaction 110, and one each by transactions 20 and 30.
        rows_as_given(|| {
            Spi::run(&format!(
                "INSERT INTO conversation (uid, channel_id, channel_type, version)
                 SELECT 'long', 'c' || i, 1, {OLD} + 100 FROM generate_series(1, 5000) AS i
                 UNION ALL SELECT 'long', 'x20', 1, {OLD} + 10 UNION ALL SELECT 'long', 'x30', 1, {OLD} + 20"
            ))
            .unwrap()
        });
        // A position of now, its horizon made to have seen everything from transaction 11 on but
        // transactions 20 and 30, which were in flight.
        let (_, position) = list("'long', NULL, NULL, 1");
        let position = position.expect("a position");
        let fields: Vec<&str> = position.split('/').collect();
        let pass: Vec<&str> = fields[5].split(':').collect();
        let (generation, xmax) = (pass[0], pass[2]);
        let since = format!("{}/{}/{}/{}/{generation}:11:{xmax}:20,30/-/-", fields[0], fields[1], fields[2], fields[3]);
        let read = || -> i64 {
            one("SELECT COALESCE(sum(pg_stat_get_xact_tuples_returned(c.oid)), 0)::int8 FROM pg_class AS c
                 WHERE c.relname LIKE 'conversation_list%' AND c.relkind = 'i'")
        };
        let before = read();
        // (The trigger, made after transactions 20 and 30 began, would refuse the position.)
        let synced = stamp_trigger_frozen(|| list(&format!("'long', NULL, '{since}', 100")).0);
        assert_eq!(synced, channels(&["x30", "x20"]));
        let walked = read() - before;
        assert!(walked <= 30, "a sync of 2 changed rows read {walked} index entries");
        // The same through SQL (where the list indexes are not the extension's as they were
        // made: here renamed; a partitioned table's, a Citus shard's): each branch reads a range
        // of its index, above the ceiling or one version in flight, never from the floor up.
        for index in ["unread", "read", "hidden"] {
            Spi::run(&format!("ALTER INDEX conversation_list_{index}_idx RENAME TO conversation_list_{index}_idx_renamed")).unwrap();
        }
        let before = read();
        let synced = stamp_trigger_frozen(|| list(&format!("'long', NULL, '{since}', 100")).0);
        assert_eq!(synced, channels(&["x30", "x20"]));
        let walked = read() - before;
        assert!(walked <= 30, "a sync of 2 changed rows through SQL read {walked} index entries");
    }

    // ---- departures (src/list/departures.rs)

    /// A sync of `uid`'s list (of type `list_type`) from `position` in pages of `page_size`
    /// until its pass ends: each channel with whether it departed, in the order they came. (In
    /// the test's own transaction every pass brings its writes again: the pass ends where the
    /// first row comes back.)
    fn synced(uid: &str, list_type: &str, position: &str, page_size: i32) -> Vec<(String, bool)> {
        let mut position = position.to_string();
        let mut got = Vec::new();
        loop {
            let rows = Spi::connect(|client| {
                client
                    .select(
                        &format!(
                            "SELECT channel_id, departed, position FROM conversation_list('{uid}', {list_type}, '{position}', {page_size})"
                        ),
                        None,
                        &[],
                    )
                    .unwrap()
                    .map(|row| {
                        (
                            row.get::<String>(1).unwrap().unwrap(),
                            row.get::<bool>(2).unwrap().unwrap(),
                            row.get::<String>(3).unwrap().unwrap(),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            let Some((_, _, last)) = rows.last() else { return got };
            position = last.clone();
            for (channel, departed, _) in rows {
                if got.first() == Some(&(channel.clone(), departed)) {
                    return got;
                }
                got.push((channel, departed));
            }
        }
    }

    /// The conversations that left a list since a position come back as departures, once their
    /// key is not in the table: deleted, moved to another user, moved to the other type's list.
    /// One deleted and made again is the row, not a departure. The same through SQL (the list
    /// indexes not the extension's) and on a partitioned table, in pages of 1.
    #[pg_test]
    fn a_sync_reports_the_conversations_that_left_the_list() {
        table_to_myself();
        // (In list order: every change here is this transaction's, the departures at the moment
        // they left, the rows at its start.)
        let expected = vec![("c06".to_string(), true), ("c04".to_string(), true), ("c02".to_string(), true), ("c08".to_string(), false)];
        for (round, setup) in ["plain", "through SQL", "partitioned"].iter().enumerate() {
            let uid = format!("leaver{round}");
            old_conversations(&uid, 8);
            lists_read(setup, round);
            let (_, position) = list(&format!("'{uid}', 1"));
            let position = position.unwrap();
            Spi::run(&format!("DELETE FROM conversation WHERE uid = '{uid}' AND channel_id = 'c02'")).unwrap();
            Spi::run(&format!("UPDATE conversation SET uid = '{uid}b' WHERE uid = '{uid}' AND channel_id = 'c04'")).unwrap();
            Spi::run(&format!("UPDATE conversation SET channel_id = 'c06____cmd' WHERE uid = '{uid}' AND channel_id = 'c06'")).unwrap();
            Spi::run(&format!("DELETE FROM conversation WHERE uid = '{uid}' AND channel_id = 'c08'")).unwrap();
            Spi::run(&format!("SELECT get_or_create_conversation('{uid}', 'c08', 1)")).unwrap();
            let got = stamp_trigger_frozen(|| synced(&uid, "1", &position, 1));
            assert_eq!(got, expected, "{setup}");
            // The one that moved is in its new lists; the departures carry the key that left.
            assert!(list(&format!("'{uid}b', 1")).0.contains(&"c04".to_string()), "{setup}");
            assert!(list(&format!("'{uid}', 2")).0.contains(&"c06____cmd".to_string()), "{setup}");
            let departure = format!(
                "SELECT format('%s %s %s %s %s %s', id IS NOT NULL, type, unread_count IS NULL, last_msg_seq IS NULL, hidden, departed)
                 FROM conversation_list('{uid}', 1, '{position}', 10) WHERE channel_id = 'c02'"
            );
            assert_eq!(stamp_trigger_frozen(|| one::<String>(&departure)), "t 1 t t t t", "{setup}");
        }
    }

    /// A row moved to the other type's list, in a list of both types, with updated_at set to the
    /// transaction's now() as an ORM would: the row and its departure both come, in pages of 1.
    #[pg_test]
    fn a_row_and_its_departure_never_share_a_place() {
        old_conversations("mover", 2);
        let (_, position) = list("'mover', NULL");
        Spi::run("UPDATE conversation SET channel_id = 'c02____cmd', updated_at = now() WHERE uid = 'mover' AND channel_id = 'c02'")
            .unwrap();
        let mut got = stamp_trigger_frozen(|| synced("mover", "NULL", &position.unwrap(), 1));
        got.sort();
        assert_eq!(got, vec![("c02".to_string(), true), ("c02____cmd".to_string(), false)]);
    }

    /// conversation_forget_departures deletes departures older than the retention, and only those
    /// every transaction running has seen end; a position that saw all it forgot goes on (the
    /// refusal of one that did not, which takes transactions of their own, is in the regression
    /// file departures.sql).
    #[pg_test]
    fn departures_are_forgotten_after_the_retention() {
        old_conversations("forgetter", 4);
        let (_, old) = list("'forgetter', 1");
        Spi::run("DELETE FROM conversation WHERE uid = 'forgetter' AND channel_id = 'c02'").unwrap();
        // Written by this transaction, still running: nothing is forgotten yet.
        assert_eq!(one::<i64>("SELECT conversation_forget_departures('0')"), 0);
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation_departure WHERE uid = 'forgetter'"), 1);
        // One written long ago is, and leaves the mark.
        Spi::run(&format!(
            "INSERT INTO conversation_departure (uid, type, version, updated_at, id, channel_id, channel_type)
             VALUES ('forgetter', 1, {OLD} + 5, now() - interval '2 days', 99, 'c99', 1)"
        ))
        .unwrap();
        assert_eq!(one::<i64>("SELECT conversation_forget_departures('1 day')"), 1);
        assert_eq!(one::<i64>("SELECT conversation_forget_departures('1 day')"), 0);
        assert!(one::<bool>(&format!("SELECT version = {OLD} + 6 FROM conversation_departure WHERE uid = '' AND type = -1")));
        // The position was taken after it: it goes on, and brings the departure kept.
        assert_eq!(stamp_trigger_frozen(|| synced("forgetter", "1", &old.unwrap(), 10)), vec![("c02".to_string(), true)]);
        for bad in ["NULL", "'-1 day'"] {
            assert_eq!(sqlstate_of(&format!("SELECT conversation_forget_departures({bad})")), "22023");
        }
    }

    /// Without its index a sync could miss a departure: it refuses (55000) and loses nothing; a
    /// first listing needs none.
    #[pg_test]
    fn a_sync_refuses_while_the_departure_index_is_unusable() {
        table_to_myself();
        old_conversations("indexless", 4);
        let (_, position) = list("'indexless', 1");
        let position = position.unwrap();
        Spi::run("DELETE FROM conversation WHERE uid = 'indexless' AND channel_id = 'c02'").unwrap();
        Spi::run("DROP INDEX conversation_departure_list_idx").unwrap();
        let refused = stamp_trigger_frozen(|| error_of(&format!("SELECT * FROM conversation_list('indexless', 1, '{position}')")));
        assert!(refused.starts_with("55000: index conversation_departure_list_idx"), "{refused}");
        assert_eq!(list("'indexless', 1").0, channels(&["c04"]));
        Spi::run("CREATE INDEX conversation_departure_list_idx ON conversation_departure (uid, type, version, updated_at, id)").unwrap();
        assert_eq!(stamp_trigger_frozen(|| synced("indexless", "1", &position, 10)), vec![("c02".to_string(), true)]);
    }

    // ---- hide, clear, unread (src/hide.rs, src/read_state.rs)

    #[pg_test]
    fn hidden_until_a_newer_message_arrives() {
        Spi::run("SELECT conversation_message_arrived('g1', 1, ARRAY['hider', 'hiderb'], 5, 'hiderb')").unwrap();
        let hidden: (Option<bool>, Option<i64>) =
            Spi::get_two("SELECT hidden, readed_to_msg_seq FROM conversation_hide('hider', 'g1', 1)").unwrap();
        assert_eq!(hidden, (Some(true), Some(0)));
        assert!(!list("'hider'").0.contains(&"g1".to_string()));
        assert_eq!(one::<i64>("SELECT conversations FROM conversation_unread('hider')"), 0);
        // A message already delivered again changes nothing; a newer one brings it back.
        Spi::run("SELECT conversation_message_arrived('g1', 1, ARRAY['hider', 'hiderb'], 5, 'hiderb')").unwrap();
        assert!(one::<bool>("SELECT hidden FROM conversation WHERE uid = 'hider'"));
        Spi::run("SELECT conversation_message_arrived('g1', 1, ARRAY['hider', 'hiderb'], 6, 'hiderb')").unwrap();
        assert_eq!(list("'hider'").0, channels(&["g1"]));
        // Back with the new message only: the one unread from before the hide is not counted again.
        assert_eq!(one::<i64>("SELECT unread_count FROM conversation_unread('hider')"), 1);
        assert_eq!(one::<i64>("SELECT readed_to_msg_seq FROM conversation WHERE uid = 'hider'"), 0, "a hide reads nothing");
        // A client that saw up to 5 does not hide a conversation with message 6 in it.
        assert!(!one::<bool>("SELECT hidden FROM conversation_hide('hider', 'g1', 1, 5)"));
        assert!(one::<bool>("SELECT hidden FROM conversation_hide('hider', 'g1', 1, 6)"));
        // No such conversation: NULL, and nothing is created.
        assert!(one::<bool>("SELECT conversation_hide('nobody', 'g1', 1) IS NULL"));
        assert!(one::<bool>("SELECT conversation_clear('nobody', 'g1', 1) IS NULL"));
        assert_eq!(one::<i64>("SELECT count(*) FROM conversation WHERE uid = 'nobody'"), 0);
        assert_eq!(sqlstate_of("SELECT conversation_hide('hider', 'g1', 1, -1)"), "22023");
        assert_eq!(sqlstate_of("SELECT conversation_hide('hider', NULL, 1)"), "22004");
    }

    #[pg_test]
    fn clear_reads_and_deletes_up_to_a_message() {
        Spi::run("SELECT conversation_message_arrived('g1', 1, ARRAY['clearer', 'clearerb'], 5, 'clearerb')").unwrap();
        Spi::run("SELECT conversation_message_arrived('g1', 1, ARRAY['clearer', 'clearerb'], 6, 'clearerb')").unwrap();
        let state = |sql: &str| -> String {
            one(&format!("SELECT format('deleted=%s read=%s unread=%s', deleted_at_msg_seq, readed_to_msg_seq, unread_count) FROM {sql}"))
        };
        // Up to 5: message 6 stays, unread.
        assert_eq!(state("conversation_clear('clearer', 'g1', 1, 5)"), "deleted=5 read=5 unread=1");
        // Nothing moves back.
        assert_eq!(state("conversation_clear('clearer', 'g1', 1, 3)"), "deleted=5 read=5 unread=1");
        // Up to the last message.
        assert_eq!(state("conversation_clear('clearer', 'g1', 1)"), "deleted=6 read=6 unread=0");
        assert_eq!(one::<i64>("SELECT unread_count FROM conversation_unread('clearer')"), 0);
        assert_eq!(sqlstate_of("SELECT conversation_clear('clearer', 'g1', 1, -5)"), "22023");
    }

    /// Reads the list and the badge as `setup` says: from the list indexes directly ("plain"),
    /// through the statements ("through SQL": the list indexes are not the extension's), or on a
    /// partitioned table (statements per partition). `round` keeps renamed indexes apart.
    fn lists_read(setup: &str, round: usize) {
        match setup {
            "through SQL" => {
                for index in ["unread", "read", "hidden"] {
                    Spi::run(&format!("ALTER INDEX conversation_list_{index}_idx RENAME TO conversation_list_{index}_idx_{round}"))
                        .unwrap();
                }
            }
            "partitioned" => Spi::run("SELECT count(*) FROM conversation_partition(4)").unwrap(),
            _ => {}
        }
    }

    /// A list shows a membership of a large channel as it stands, in its place as it stands (its
    /// channel's last message dates it), and not a hidden one until a message brings it back; the
    /// stored row is not listed. Read directly, through SQL and on a partitioned table alike.
    #[pg_test]
    fn a_list_shows_large_memberships_as_they_stand() {
        table_to_myself();
        for (round, setup) in ["plain", "through SQL", "partitioned"].iter().enumerate() {
            lists_read(setup, round);
            let (uid, hidden, large, small) =
                (format!("lst{round}"), format!("lst{round}-hidden"), format!("lst{round}-large"), format!("lst{round}-small"));
            Spi::run(&format!(
                "SELECT conversation_channel_make_large(channel, 1, ARRAY['{uid}', 'x']) FROM unnest(ARRAY['{large}', '{hidden}']) AS channel;
                 SELECT conversation_message_arrived('{hidden}', 1, ARRAY['{uid}', 'x'], 1, 'x');
                 SELECT conversation_hide('{uid}', '{hidden}', 1, 1);
                 SELECT conversation_message_arrived('{small}', 1, ARRAY['{uid}', 'x'], 1, 'x');
                 UPDATE conversation SET updated_at = '2026-01-01' WHERE uid = '{uid}' AND channel_id = '{small}';
                 SELECT conversation_message_arrived('{large}', 1, ARRAY['{uid}', 'x'], seq, 'x') FROM generate_series(1, 3) AS seq;
                 UPDATE conversation_channel SET updated_at = '2026-02-01' WHERE channel_id = '{large}'"
            ))
            .unwrap();
            let listed: String = one(&format!(
                "SELECT string_agg(format('%s %s %s', channel_id, last_msg_seq, unread_count), ', ') FROM conversation_list('{uid}')"
            ));
            assert_eq!(listed, format!("{large} 3 3, {small} 1 1"), "{setup}");
            // Brought back by a message: listed again, with that message unread.
            Spi::run(&format!("SELECT conversation_message_arrived('{hidden}', 1, ARRAY['{uid}', 'x'], 2, 'x')")).unwrap();
            let listed: String = one(&format!(
                "SELECT string_agg(format('%s %s', channel_id, unread_count), ', ' ORDER BY channel_id) FROM conversation_list('{uid}')"
            ));
            assert_eq!(listed, format!("{hidden} 1, {large} 3, {small} 1"), "{setup}");
        }
    }

    /// The badge counts a membership of a large channel as it stands (its stored unread count is
    /// not what the channel's messages made it), a hidden one only once a message brings it back.
    /// Read directly, through SQL and on a partitioned table alike.
    #[pg_test]
    fn the_badge_counts_large_memberships_as_they_stand() {
        table_to_myself();
        for (round, setup) in ["plain", "through SQL", "partitioned"].iter().enumerate() {
            lists_read(setup, round);
            let (uid, hidden, large, small) =
                (format!("bdg{round}"), format!("bdg{round}-hidden"), format!("bdg{round}-large"), format!("bdg{round}-small"));
            Spi::run(&format!(
                "SELECT conversation_message_arrived('{small}', 1, ARRAY['{uid}', 'x'], seq, 'x') FROM generate_series(1, 2) AS seq;
                 SELECT conversation_channel_make_large(channel, 1, ARRAY['{uid}', 'x']) FROM unnest(ARRAY['{large}', '{hidden}']) AS channel;
                 SELECT conversation_message_arrived('{large}', 1, ARRAY['{uid}', 'x'], seq, 'x') FROM generate_series(1, 3) AS seq;
                 SELECT conversation_message_arrived('{hidden}', 1, ARRAY['{uid}', 'x'], 1, 'x');
                 SELECT conversation_hide('{uid}', '{hidden}', 1, 1)"
            ))
            .unwrap();
            let badge = format!("SELECT unread_count || ' ' || conversations FROM conversation_unread('{uid}')");
            assert_eq!(one::<String>(&badge), "5 2", "{setup}");
            assert_eq!(one::<i32>(&format!("SELECT unread_count FROM conversation WHERE uid = '{uid}' AND channel_id = '{large}'")), 0);
            Spi::run(&format!("SELECT conversation_message_arrived('{hidden}', 1, ARRAY['{uid}', 'x'], 2, 'x')")).unwrap();
            assert_eq!(one::<String>(&badge), "6 3", "{setup}");
            Spi::run(&format!("SELECT conversation_mark_read('{uid}', '{large}', 1, 3)")).unwrap();
            assert_eq!(one::<String>(&badge), "3 2", "{setup}");
            assert_eq!(
                one::<String>(&format!("SELECT unread_count || ' ' || conversations FROM conversation_unread('{uid}', 1)")),
                "3 2",
                "{setup}"
            );
        }
    }

    #[pg_test]
    fn unread_totals_count_visible_conversations_of_a_type() {
        Spi::run("SELECT conversation_message_arrived('g1', 1, ARRAY['counter'], 3, NULL)").unwrap();
        Spi::run("SELECT conversation_message_arrived('g2', 1, ARRAY['counter'], 1, NULL)").unwrap();
        Spi::run("SELECT conversation_message_arrived('g2', 1, ARRAY['counter'], 2, NULL)").unwrap();
        Spi::run("SELECT conversation_message_arrived('g3____cmd', 1, ARRAY['counter'], 1, NULL)").unwrap();
        Spi::run("SELECT get_or_create_conversation('counter', 'g4', 1)").unwrap();
        let totals = |sql: &str| -> (i64, i64) {
            let (unread, conversations) = Spi::get_two::<i64, i64>(&format!("SELECT * FROM {sql}")).unwrap();
            (unread.unwrap(), conversations.unwrap())
        };
        assert_eq!(totals("conversation_unread('counter')"), (4, 3));
        assert_eq!(totals("conversation_unread('counter', 1)"), (3, 2));
        assert_eq!(totals("conversation_unread('counter', 2)"), (1, 1));
        Spi::run("SELECT conversation_hide('counter', 'g2', 1)").unwrap();
        assert_eq!(totals("conversation_unread('counter', 1)"), (1, 1));
        assert_eq!(totals("conversation_unread('nobody')"), (0, 0));
    }
}
