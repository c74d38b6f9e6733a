//! The leaderboard of one database: a small table of its top players (`leaders`, migration
//! 0008) kept by the consumer's batch, instead of an index on `user_stats` that D1 billed a
//! row for each time any player's total moved.
//!
//! The invariant: no player missing from `leaders` ranks above the floor
//! (`leaders_floor.floor_points`, `floor_user`) in the leaderboard's order, points down then
//! user id up; a NULL floor means every player is in it. So the members ranked above the
//! floor are exactly the database's top players, in order, and the leaderboard serves them.
//!
//! Each batch ([`KEEP`], after the batch's points are added):
//! - a player of the batch already in `leaders` gets their new total, and one ranked above
//!   the floor enters (a row written only then: most players never touch the table);
//! - past [`KEPT`] members, the floor rises to the best of those cut, and they go;
//! - points can go down, so members can sink below the floor; when fewer than
//!   [`SERVED`] members rank above it, the table is refilled from a scan of `user_stats`
//!   (rows read are a thousandth of the price of rows written), in the same batch.
//!
//! A move changes which players a database holds: [`REBUILD`] refills it from scratch, run
//! by the flip on both databases, by the purge once it is done, and by reconcile's repair.
//! A rebuild can also be requested by setting `leaders_floor.refill` outside a batch: the
//! next batch then does it (migration 0008 does this, so that totals written by Workers
//! older than the table never linger in it).
//! Players of a bucket the database has given away (fenced `moved`) never count.

/// Members kept: twice the largest page, so that players sinking below the floor rarely
/// force a refill.
pub const KEPT: u32 = 200;
/// Members above the floor the table must serve: the largest leaderboard page.
pub const SERVED: u32 = crate::request::MAX_LEADERBOARD;

/// True for `user_stats AS s` rows of players this database still holds.
macro_rules! held {
    () => {
        "NOT EXISTS (SELECT 1 FROM bucket_fences AS f WHERE f.bucket = substr(s.user_id, 1, 2) AND f.reason = 'moved')"
    };
}

/// True when the player `(points, user)` ranks above the floor of `leaders_floor AS lf`.
macro_rules! above_floor {
    ($points:literal, $user:literal) => {
        concat!(
            "(lf.floor_points IS NULL OR ",
            $points,
            " > lf.floor_points OR (",
            $points,
            " = lf.floor_points AND ",
            $user,
            " < lf.floor_user))"
        )
    };
}

/// True, for the `leaders_floor` row `$lf`, when this batch can have changed the table's
/// size or a member's rank: a refill is under way, or one of the batch's players (`?1`) is a
/// member (members sink only by their own turns; new ones enter only by theirs). Most
/// batches hold no member, and then the statements gated by it read nothing: D1 bills
/// every row a statement reads, and these would read the whole table in each batch.
macro_rules! touched {
    ($lf:literal) => {
        concat!(
            "json_array_length(?1) > 0 AND (",
            $lf,
            ".refill = 1 OR EXISTS (SELECT 1 FROM leaders AS m WHERE m.user_id IN (SELECT r.value ->> '$.user_id' FROM json_each(?1) AS r)))"
        )
    };
}

/// The batch's players (`?1`, `batch::turns_json`) who are members, or who now rank above
/// the floor, get their total in `leaders`; a row is written only when it changes.
pub const ENTER: &str = concat!(
    "\
INSERT INTO leaders (user_id, total_points)
SELECT s.user_id, s.total_points
FROM user_stats AS s, leaders_floor AS lf
WHERE lf.id = 1
  AND s.user_id IN (SELECT r.value ->> '$.user_id' FROM json_each(?1) AS r)
  AND (EXISTS (SELECT 1 FROM leaders AS l WHERE l.user_id = s.user_id)
       OR ",
    above_floor!("s.total_points", "s.user_id"),
    ")
  AND ",
    held!(),
    "
ON CONFLICT (user_id) DO UPDATE SET total_points = excluded.total_points
WHERE leaders.total_points IS NOT excluded.total_points"
);

/// The floor a refill sets: the player just below the top [`KEPT`] of `user_stats` (none:
/// both NULL), found by one scan for both columns.
macro_rules! new_floor {
    () => {
        concat!(
            "(floor_points, floor_user) = (SELECT s.total_points, s.user_id FROM user_stats AS s WHERE ",
            held!(),
            "
    ORDER BY s.total_points DESC, s.user_id LIMIT 1 OFFSET 200)"
        )
    };
}

/// When fewer than [`SERVED`] members rank above a floor, the floor drops to the player
/// just below the top [`KEPT`] of `user_stats` (none: NULL) and a refill is marked. The scan
/// runs only then, and the count only when a member played.
pub const REFLOOR: &str = concat!(
    "\
UPDATE leaders_floor AS lf
SET refill = 1,
    ",
    new_floor!(),
    "
WHERE lf.id = 1 AND lf.floor_points IS NOT NULL AND ",
    touched!("lf"),
    "
  AND (SELECT COUNT(*) FROM (SELECT 1 FROM leaders AS l WHERE ",
    above_floor!("l.total_points", "l.user_id"),
    " LIMIT 100)) < 100"
);

/// Marks a refill whatever the table holds (a [`REBUILD`]'s first step).
pub const MARK: &str = "UPDATE leaders_floor SET refill = 1 WHERE id = 1";

/// During a marked refill, the floor as [`REFLOOR`] sets it, with one more condition.
macro_rules! refloor_marked {
    ($also:literal) => {
        concat!(
            "\
UPDATE leaders_floor
SET ",
            new_floor!(),
            "
WHERE id = 1 AND refill = 1 AND ",
            $also
        )
    };
}

/// A marked rebuild's floor, outside a batch (no parameter).
pub const REFLOOR_MARKED: &str = refloor_marked!("true");

/// A rebuild marked before the batch began (by migration 0008, for the first batch of the
/// Workers that keep the table): its floor.
pub const REFLOOR_REQUESTED: &str = refloor_marked!("json_array_length(?1) > 0");

/// During a marked rebuild: `leaders` emptied first, so that players the database no longer
/// holds, or totals written while nothing kept the table, go.
pub const CLEAR_MARKED: &str =
    "DELETE FROM leaders WHERE (SELECT refill FROM leaders_floor WHERE id = 1) = 1";

/// [`CLEAR_MARKED`] at a batch's start: a refill marked then was requested from outside.
/// `leaders_floor` is the outer loop, so that the table is read only then.
pub const CLEAR_REQUESTED: &str = "\
DELETE FROM leaders WHERE user_id IN (
  SELECT l.user_id FROM leaders_floor AS lf CROSS JOIN leaders AS l
  WHERE lf.id = 1 AND lf.refill = 1 AND json_array_length(?1) > 0)";

/// `INSERT` of the top [`KEPT`] of `user_stats` into `leaders` during a refill, with one more
/// condition.
macro_rules! refill {
    ($also:literal) => {
        concat!(
            "\
INSERT INTO leaders (user_id, total_points)
SELECT s.user_id, s.total_points FROM leaders_floor AS lf CROSS JOIN user_stats AS s
WHERE lf.id = 1 AND lf.refill = 1 AND ",
            $also,
            " AND ",
            held!(),
            "
ORDER BY s.total_points DESC, s.user_id LIMIT 200
ON CONFLICT (user_id) DO UPDATE SET total_points = excluded.total_points
WHERE leaders.total_points IS NOT excluded.total_points"
        )
    };
}

/// During a refill: the top [`KEPT`] of `user_stats` become members. `leaders_floor` is the
/// outer loop (`CROSS JOIN` fixes the order), so in every other batch the scan of
/// `user_stats` never starts: SQLite does not hoist a subquery condition out of the loop,
/// and a scan of every player in each batch would be billed as rows read.
pub const REFILL: &str = refill!("json_array_length(?1) > 0");

/// [`REFILL`] outside a batch (no parameter).
pub const REFILL_MARKED: &str = refill!("true");

/// Past [`KEPT`] members, the floor rises to the best member cut (when it ranks above it).
pub const RAISE_FLOOR: &str = concat!(
    "\
UPDATE leaders_floor AS lf
SET floor_points = (SELECT total_points FROM leaders ORDER BY total_points DESC, user_id LIMIT 1 OFFSET 200),
    floor_user = (SELECT user_id FROM leaders ORDER BY total_points DESC, user_id LIMIT 1 OFFSET 200)
WHERE lf.id = 1 AND ",
    touched!("lf"),
    "
  AND EXISTS (SELECT 1 FROM (SELECT total_points, user_id FROM leaders
                             ORDER BY total_points DESC, user_id LIMIT 1 OFFSET 200) AS t
              WHERE ",
    above_floor!("t.total_points", "t.user_id"),
    ")"
);

/// Cuts the members past [`KEPT`] (after [`RAISE_FLOOR`]). `leaders_floor` is the outer
/// loop, so that the members are ranked only when the batch touched the table.
pub const TRIM: &str = concat!(
    "\
DELETE FROM leaders WHERE user_id IN (
  SELECT t.user_id FROM leaders_floor AS lf CROSS JOIN (
    SELECT user_id FROM leaders ORDER BY total_points DESC, user_id LIMIT -1 OFFSET 200) AS t
  WHERE lf.id = 1 AND ",
    touched!("lf"),
    ")"
);

/// Ends a refill.
pub const REFILLED_MARKED: &str = "UPDATE leaders_floor SET refill = 0 WHERE id = 1 AND refill = 1";

/// Ends a batch's refill.
pub const REFILLED: &str =
    "UPDATE leaders_floor SET refill = 0 WHERE id = 1 AND refill = 1 AND json_array_length(?1) > 0";

/// What each batch runs after its points are added, in order, each binding the batch's
/// JSON as `?1` (an empty batch changes nothing). A refill marked before the batch (a
/// rebuild requested from outside: migration 0008 marks one, for the first batch of Workers
/// that keep the table) starts from an empty table; a refill the batch needs tops it up.
pub const KEEP: [&str; 8] = [
    CLEAR_REQUESTED,
    REFLOOR_REQUESTED,
    ENTER,
    REFLOOR,
    REFILL,
    RAISE_FLOOR,
    TRIM,
    REFILLED,
];

/// Refills `leaders` from scratch when a refill is marked (no parameters), in one
/// transaction: reconcile marks one when its repair changed totals outside a batch.
pub const REBUILD_MARKED: [&str; 4] =
    [CLEAR_MARKED, REFLOOR_MARKED, REFILL_MARKED, REFILLED_MARKED];

/// Refills `leaders` from scratch (no parameters), in one transaction: after a move changed
/// what the database holds.
pub const REBUILD: [&str; 5] = [
    MARK,
    CLEAR_MARKED,
    REFLOOR_MARKED,
    REFILL_MARKED,
    REFILLED_MARKED,
];

/// The top `?1` players of one database, ties broken by user id, among the buckets of `?2`
/// (a JSON array of bucket prefixes: the ones the live map gives this database), so that a
/// copy in progress or one not purged yet never counts a player twice.
pub const LEADERBOARD: &str = concat!(
    "\
SELECT l.user_id, u.display_name, u.x_username, l.total_points, s.intimacy_level
FROM leaders AS l, leaders_floor AS lf
JOIN user_stats AS s ON s.user_id = l.user_id
JOIN users AS u ON u.id = l.user_id
WHERE lf.id = 1 AND ",
    above_floor!("l.total_points", "l.user_id"),
    "
  AND substr(l.user_id, 1, 2) IN (SELECT value FROM json_each(?2))
ORDER BY l.total_points DESC, l.user_id ASC
LIMIT ?1"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_literals_in_the_sql_are_the_constants() {
        // SQL text cannot interpolate a const; these keep the two in step.
        for s in [REFLOOR, REFLOOR_MARKED, REFILL, RAISE_FLOOR, TRIM] {
            assert!(s.contains(&KEPT.to_string()), "{s}");
        }
        assert!(REFLOOR.contains(&format!(") < {SERVED}")));
        // Every statement of a batch binds the batch; none of a rebuild binds anything.
        for s in KEEP {
            assert!(s.contains("?1"), "{s}");
        }
        for s in REBUILD {
            assert!(!s.contains('?'), "{s}");
        }
    }
}
