//! The turn runner (`chat_core::turn::Runner`) natively, as every transport runs it: the
//! actor's own SQL on SQLite, an in-memory queue whose sends can fail or be followed by a
//! reset of the actor, an alarm that remembers when it is due, the offline engine, a clock
//! the test moves, and the consumer's batch on a second SQLite database. A "reset" drops
//! the turn where it stands and everything held in memory (the gate, the frame log), and
//! opens the same storage again.

use chat_core::character::{Character, Locale};
use chat_core::clock::Clock;
use chat_core::domain::{IdempotencyKey, SessionId};
use chat_core::engine::{OfflineEngine, Paced, ReplyEngine};
use chat_core::identity::{AuthProvider, Identity};
use chat_core::live::{seq_of, Frame};
use chat_core::native::actor::{
    block_on, run_until_reset, ActorDb, MemoryAlarm, MemoryQueue, QueueFault, TestClock, Yield,
};
use chat_core::native::{apply_turns, open_in_memory, start_session};
use chat_core::refusal::Refusal;
use chat_core::session::{
    SessionState, TurnAsk, ANSWER_KEEP_MS, MAX_WAITING_TURNS, SWEEP_SLACK_MS,
};
use chat_core::turn::{
    Answered, Audience, InstanceMemory, Runner, SessionStore, Silent, TurnError, TurnSink,
};
use futures_util::future::join;
use rusqlite::Connection;
use std::cell::RefCell;
use std::future::Future;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

struct Game {
    actor: Connection,
    d1: Connection,
    queue: MemoryQueue,
    clock: TestClock,
    alarm: MemoryAlarm,
    player: Identity,
    session: SessionId,
}

/// One instance of the actor: what it holds in memory, on the game's storage.
struct Instance<'g> {
    game: &'g Game,
    store: ActorDb<'g>,
    memory: InstanceMemory,
}

impl Instance<'_> {
    fn runner<'a, E: ReplyEngine>(
        &'a self,
        engine: &'a E,
    ) -> Runner<'a, ActorDb<'a>, MemoryQueue, E, TestClock, MemoryAlarm> {
        Runner {
            store: &self.store,
            queue: &self.game.queue,
            engine,
            clock: &self.game.clock,
            alarm: &self.game.alarm,
            memory: &self.memory,
            keep: 20,
        }
    }
}

/// What a client sees of a turn dropped by a reset: no answer.
fn reset() -> TurnError {
    TurnError::QueueUnavailable("the actor was reset".into())
}

impl Game {
    fn new() -> Self {
        let actor = Connection::open_in_memory().unwrap();
        let player = Identity::new(AuthProvider::X, "flow-player").unwrap();
        let session = SessionId::from(Uuid::now_v7());
        ActorDb::open(&actor)
            .unwrap()
            .start(&SessionState {
                id: session,
                user_id: player.user_id(),
                character_type: Character::Rin,
                locale: Locale::En,
                username: "Flo".into(),
                created_at: T0,
                ended_at: None,
            })
            .unwrap();
        let d1 = open_in_memory().unwrap();
        start_session(&d1, &player, session.uuid(), T0).unwrap();
        Self {
            actor,
            d1,
            queue: MemoryQueue::default(),
            clock: TestClock::at(T0 + 1_000),
            alarm: MemoryAlarm::default(),
            player,
            session,
        }
    }

    /// A fresh instance of the actor, as after any reset.
    fn instance(&self) -> Instance<'_> {
        Instance {
            game: self,
            store: ActorDb::open(&self.actor).unwrap(),
            memory: InstanceMemory::default(),
        }
    }

    fn ask(&self, message: &str, key: Option<&str>) -> TurnAsk {
        TurnAsk {
            session_id: self.session,
            identity: self.player.clone(),
            message: message.into(),
            locale: None,
            idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        }
    }

    /// One request, on a fresh instance of the actor, through the runner as plain HTTP
    /// runs it.
    fn turn(&self, message: &str, key: Option<&str>) -> Result<Answered, TurnError> {
        self.clock.advance(10);
        let instance = self.instance();
        let runner = instance.runner(&OfflineEngine);
        let ask = self.ask(message, key);
        match run_until_reset(
            &self.queue,
            runner.run(&ask, &mut Silent, std::future::pending()),
        ) {
            Some(outcome) => outcome.map_err(|f| f.error),
            None => Err(reset()),
        }
    }

    /// The consumer stores everything queued so far, redeliveries and all.
    fn consume(&mut self) -> chat_core::native::Applied {
        let records = self.queue.records();
        self.queue.sent.borrow_mut().clear();
        apply_turns(&mut self.d1, &records).unwrap()
    }

    fn stored(&self) -> i64 {
        self.d1
            .query_row("SELECT COUNT(*) FROM point_events", [], |r| r.get(0))
            .unwrap()
    }

    /// What the character remembers: the players' words of the turns it would be told.
    fn memory(&self) -> Vec<String> {
        ActorDb::open(&self.actor)
            .unwrap()
            .recent_turns(20)
            .unwrap()
            .into_iter()
            .map(|t| t.user_content)
            .collect()
    }

    /// Answers held by the actor (not dropped by its alarm yet).
    fn answers_held(&self) -> i64 {
        ActorDb::open(&self.actor).unwrap().counts().3
    }
}

#[test]
fn a_reset_after_the_send_is_answered_by_the_retry_and_stored_once() {
    let mut g = Game::new();
    g.queue.fail_next(QueueFault::ResetAfterSend);
    assert_eq!(g.turn("you are kind", Some("k1")), Err(reset()));
    assert_eq!(
        g.queue.sent.borrow().len(),
        1,
        "the record reached the queue"
    );

    // The same key and message: the bound turn is sent again and answered, same ids.
    let retry = g.turn("you are kind", Some("k1")).unwrap();
    assert!(retry.replayed, "the answer bound before the send");
    assert_eq!(g.queue.resent.get(), 1);
    let records = g.queue.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0], records[1], "the very same record, twice");
    assert!(retry.body.contains(&records[0].turn_id.to_string()));
    let applied = g.consume();
    assert_eq!(
        (applied.applied, applied.duplicates, applied.conflicts),
        (1, 1, 0)
    );
    assert_eq!(g.stored(), 1);
    // Another retry is a plain replay: nothing more is queued.
    assert_eq!(g.turn("you are kind", Some("k1")).unwrap().body, retry.body);
    assert!(g.queue.sent.borrow().is_empty());
}

#[test]
fn every_answer_held_expires_on_time_however_its_turn_was_completed_and_is_freed_within_a_day() {
    let g = Game::new();
    // Completed by its own request...
    g.turn("hello", Some("plain")).unwrap();
    let answered_first = g.clock.now_ms();
    // ...and one completed by the next request, after a reset between its send and its
    // confirmation: no request of its own ever finished.
    g.queue.fail_next(QueueFault::ResetAfterSend);
    assert_eq!(g.turn("you are kind", Some("reset")), Err(reset()));
    g.turn("and you are funny", None).unwrap();
    assert_eq!(g.answers_held(), 2);
    let due = g.alarm.at.get().expect("the alarm is set");
    assert!(
        due <= answered_first + ANSWER_KEEP_MS,
        "due {due}, but the first answer expires at {}",
        answered_first + ANSWER_KEEP_MS
    );
    // Each answer expires for a retry at its time, whether or not its row is freed yet.
    g.clock.now.set(answered_first + ANSWER_KEEP_MS - 20);
    assert!(
        g.turn("hello", Some("plain")).is_ok(),
        "still held just before"
    );
    g.clock.now.set(answered_first + ANSWER_KEEP_MS);
    assert_eq!(
        g.turn("hello", Some("plain")),
        Err(TurnError::KeyExpired),
        "expired at its time"
    );
    // The alarm frees the rows: it rings as long as answers are held, at most once a day,
    // and within a day of the last expiry every one is dropped. Three keyed turns set it
    // once, not once each.
    assert_eq!(
        g.alarm.sets.get(),
        1,
        "one setAlarm for every answer of the day"
    );
    let store = ActorDb::open(&g.actor).unwrap();
    let last_expiry = g.clock.now_ms() + ANSWER_KEEP_MS;
    let mut rings = 0;
    let mut rang_at = None;
    while let Some(at) = g.alarm.at.get() {
        assert!(
            at <= last_expiry + SWEEP_SLACK_MS,
            "an alarm a day past the last expiry: {at}"
        );
        if let Some(before) = rang_at {
            assert!(at - before >= SWEEP_SLACK_MS, "two runs within a day");
        }
        g.clock.now.set(at.max(g.clock.now_ms()));
        assert!(g.alarm.ring(&store, g.clock.now_ms()));
        rang_at = Some(g.clock.now_ms());
        rings += 1;
        assert!(rings < 10, "the alarm keeps ringing");
    }
    assert_eq!(g.answers_held(), 0, "every answer's row was freed");
    assert_eq!(
        store.counts().2,
        2,
        "the keys stay bound, without their answers"
    );
}

#[test]
fn a_session_playing_every_day_sets_and_runs_its_alarm_about_once_a_day() {
    // A player keyed like the page, 20 turns a day, each a few minutes apart, for a week;
    // the alarm runs whenever it is due. Each `setAlarm` is a row written and each run a
    // request: the count is what the alarm costs per turn.
    let g = Game::new();
    let store = ActorDb::open(&g.actor).unwrap();
    let (mut turns, mut runs) = (0, 0);
    let day = ANSWER_KEEP_MS;
    let start = g.clock.now_ms();
    for d in 0..7 {
        for t in 0..20 {
            let at = start + d * day + t * 180_000;
            while let Some(due) = g.alarm.at.get().filter(|due| *due <= at) {
                g.clock.now.set(due.max(g.clock.now_ms()));
                assert!(g.alarm.ring(&store, g.clock.now_ms()));
                runs += 1;
            }
            g.clock.now.set(at.max(g.clock.now_ms()));
            let key = format!("d{d}-t{t}");
            g.turn(&format!("hello {d} {t}"), Some(&key)).unwrap();
            turns += 1;
        }
    }
    let sets = g.alarm.sets.get();
    eprintln!("{turns} keyed turns over 7 days: {sets} setAlarm, {runs} alarm runs");
    // Was one set and one run per answer (120 and 119 here) when the alarm was set for
    // each next expiry.
    assert!(
        sets <= 8 && runs <= 7,
        "{sets} sets and {runs} runs for {turns} turns"
    );
    // The rows wait at most a day longer: no more than two days of answers are held.
    assert!(g.answers_held() <= 40, "{} answers held", g.answers_held());
}

#[test]
fn a_reset_key_is_refused_for_another_message_and_nothing_becomes_a_conflict() {
    let mut g = Game::new();
    g.queue.fail_next(QueueFault::ResetAfterSend);
    assert!(g.turn("hello there", Some("k1")).is_err());
    // The client edits its message and retries with the same key.
    assert_eq!(
        g.turn("hello there!!", Some("k1")),
        Err(TurnError::KeyReused)
    );
    let applied = g.consume();
    assert_eq!(applied.conflicts, 0, "no dead letter is made");
    assert_eq!(applied.applied, 1, "the turn the queue took is stored");
    // The actor holds what D1 holds: that turn, in the conversation.
    let (turns, unconfirmed, ..) = ActorDb::open(&g.actor).unwrap().counts();
    assert_eq!((turns, unconfirmed), (1, 0));
}

#[test]
fn a_failed_send_is_completed_before_the_next_turn_and_a_game_over_holds() {
    let mut g = Game::new();
    // The queue refuses the send of a turn that ends the game.
    g.queue.fail_next(QueueFault::Fail);
    let over = g.turn("I hate you, you are stupid", Some("k-end"));
    assert!(matches!(over, Err(TurnError::QueueUnavailable(_))));
    assert!(g.queue.sent.borrow().is_empty());
    // The player moves on with another key: the bound turn goes first, and ends the game.
    assert_eq!(g.turn("sorry", Some("k-next")), Err(TurnError::Ended));
    assert_eq!(g.queue.resent.get(), 1);
    g.consume();
    assert_eq!(g.stored(), 1);
    let ended: Option<i64> =
        g.d1.query_row("SELECT ended_at FROM chat_sessions", [], |r| r.get(0))
            .unwrap();
    assert!(ended.is_some(), "D1 ends the session too");
    // The key that ended the game still gets its answer.
    let answer = g.turn("I hate you, you are stupid", Some("k-end")).unwrap();
    assert!(
        answer.body.contains("\"isGameOver\":true"),
        "{}",
        answer.body
    );
}

#[test]
fn an_unkeyed_game_over_is_final_after_a_reset() {
    let mut g = Game::new();
    g.turn("hello", None).unwrap();
    // A game-over turn with no key: queued, then the actor is reset before it hears so.
    g.queue.fail_next(QueueFault::ResetAfterSend);
    assert_eq!(g.turn("I hate you, you are stupid", None), Err(reset()));
    // The next turn finds it, sends it again, and the game is over.
    assert_eq!(g.turn("hello again", None), Err(TurnError::Ended));
    assert_eq!(g.turn("hello again", Some("k")), Err(TurnError::Ended));
    let applied = g.consume();
    assert_eq!((applied.applied, applied.duplicates), (2, 1));
    assert_eq!(
        g.stored(),
        2,
        "the game-over turn is stored once, and nothing after it"
    );
    let (total, ended): (i64, Option<i64>) =
        g.d1.query_row(
            "SELECT (SELECT total_points FROM user_stats), (SELECT ended_at FROM chat_sessions)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let sum: i64 =
        g.d1.query_row("SELECT SUM(delta) FROM point_events", [], |r| r.get(0))
            .unwrap();
    assert_eq!(total, sum);
    assert!(ended.is_some());
    assert_eq!(
        g.memory(),
        ["hello", "I hate you, you are stupid"],
        "the character remembers the turn that ended the game"
    );
}

#[test]
fn an_unkeyed_turn_that_failed_is_not_sent_behind_the_players_back() {
    let mut g = Game::new();
    g.queue.fail_next(QueueFault::Fail);
    assert!(g.turn("hi", None).is_err());
    g.turn("hi again", None).unwrap();
    g.consume();
    assert_eq!(g.stored(), 1, "only the turn that was answered");
    assert_eq!(g.queue.resent.get(), 0);
    assert_eq!(g.memory(), ["hi again"]);
}

#[test]
fn answers_expire_when_the_retry_comes_and_the_alarm_drops_them() {
    let g = Game::new();
    let first = g.turn("thank you", Some("k1")).unwrap();
    g.clock.advance(ANSWER_KEEP_MS - 1_000);
    assert_eq!(g.turn("thank you", Some("k1")).unwrap().body, first.body);
    g.clock.advance(1_000);
    // No later turn came and no alarm ran, yet the retry is a day late.
    assert_eq!(g.turn("thank you", Some("k1")), Err(TurnError::KeyExpired));
    assert_eq!(g.turn("other", Some("k1")), Err(TurnError::KeyReused));
    let store = ActorDb::open(&g.actor).unwrap();
    assert_eq!(store.counts().3, 1, "the answer is still held");
    assert_eq!(store.expire_answers(g.clock.now.get()).unwrap(), None);
    assert_eq!(store.counts().3, 0, "the alarm dropped it");
    assert_eq!(store.counts().2, 1, "the key stays bound");
}

#[test]
fn an_unknown_session_leaves_its_storage_empty() {
    let g = Game::new();
    let conn = Connection::open_in_memory().unwrap();
    let instance = Instance {
        game: &g,
        store: ActorDb::open(&conn).unwrap(),
        memory: InstanceMemory::default(),
    };
    let result = block_on(instance.runner(&OfflineEngine).run(
        &g.ask("hi", Some("k")),
        &mut Silent,
        std::future::pending(),
    ));
    assert_eq!(result.unwrap_err().error, TurnError::NotFound);
    let objects: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(objects, 0, "nothing was created");
    assert!(g.queue.sent.borrow().is_empty());
}

#[test]
fn another_player_is_refused_before_waiting_and_a_crowd_is_refused_while_waiting() {
    let g = Game::new();
    let instance = g.instance();
    let runner = instance.runner(&OfflineEngine);
    let held = block_on(instance.memory.gate.enter()).unwrap();
    // Another player's turn, while the session's turn is held: refused at once.
    let mut stranger = g.ask("hi", None);
    stranger.identity = Identity::new(AuthProvider::X, "stranger").unwrap();
    let refused = block_on(runner.run(&stranger, &mut Silent, std::future::pending()));
    assert_eq!(refused.unwrap_err().error, TurnError::NotFound);
    assert_eq!(instance.memory.gate.waiting(), 0, "it never waited");
    // The owner's turns wait, a few at most.
    let asks: Vec<TurnAsk> = (0..=MAX_WAITING_TURNS)
        .map(|n| g.ask(&format!("turn {n}"), None))
        .collect();
    let mut waiting: Vec<_> = asks[..MAX_WAITING_TURNS]
        .iter()
        .map(|ask| Box::pin(runner.run(ask, Box::leak(Box::new(Silent)), std::future::pending())))
        .collect::<Vec<_>>();
    let cx = &mut std::task::Context::from_waker(std::task::Waker::noop());
    for turn in &mut waiting {
        assert!(turn.as_mut().poll(cx).is_pending());
    }
    assert_eq!(instance.memory.gate.waiting(), MAX_WAITING_TURNS);
    let one_more = block_on(runner.run(
        &asks[MAX_WAITING_TURNS],
        &mut Silent,
        std::future::pending(),
    ));
    assert_eq!(one_more.unwrap_err().error, TurnError::Busy);
    assert_eq!(TurnError::Busy.refusal().status(), 409);
    drop(held);
    // Once the session is free, the waiting turns are played in their order.
    for turn in waiting {
        block_on(turn).unwrap();
    }
    let memory = g.memory();
    assert_eq!(memory.len(), MAX_WAITING_TURNS);
    assert_eq!(memory[0], "turn 0");
}

#[test]
fn an_actor_written_by_the_first_schema_is_upgraded_in_place() {
    let conn = Connection::open_in_memory().unwrap();
    // Version 1, as the first actors wrote it.
    conn.execute_batch(
        "CREATE TABLE session (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, character_type TEXT NOT NULL,
           locale TEXT NOT NULL, username TEXT NOT NULL, created_at INTEGER NOT NULL, ended_at INTEGER);
         CREATE TABLE turns (seq INTEGER PRIMARY KEY, turn_id TEXT NOT NULL UNIQUE, user_content TEXT NOT NULL,
           agent_content TEXT NOT NULL, score_raw INTEGER NOT NULL, emotion TEXT NOT NULL, created_at INTEGER NOT NULL);
         CREATE TABLE answered_keys (key TEXT PRIMARY KEY, message_sha256 TEXT NOT NULL, turn_id TEXT NOT NULL,
           answer TEXT, answered_at INTEGER NOT NULL);
         CREATE INDEX answered_keys_with_answer ON answered_keys (answered_at) WHERE answer IS NOT NULL;",
    )
    .unwrap();
    let player = Identity::new(AuthProvider::Privy, "did:privy:old").unwrap();
    let session = Uuid::now_v7();
    conn.execute(
        "INSERT INTO session VALUES (?1, ?2, 'kai', 'ja', 'Old', ?3, NULL)",
        rusqlite::params![session.to_string(), player.user_id().to_string(), T0],
    )
    .unwrap();
    for n in 1..=30 {
        conn.execute(
            "INSERT INTO turns VALUES (?1, ?2, ?3, 'reply', 2, 'happy', ?4)",
            rusqlite::params![n, format!("t-old-{n}"), format!("before {n}"), T0 + n],
        )
        .unwrap();
    }
    let store = ActorDb::open(&conn).unwrap();
    let queue = MemoryQueue::default();
    let (memory, alarm) = (InstanceMemory::default(), MemoryAlarm::default());
    let clock = TestClock::at(T0 + 5_000);
    let runner = Runner {
        store: &store,
        queue: &queue,
        engine: &OfflineEngine,
        clock: &clock,
        alarm: &alarm,
        memory: &memory,
        keep: 20,
    };
    let ask = TurnAsk {
        session_id: session.into(),
        identity: player,
        message: "after the upgrade".into(),
        locale: None,
        idempotency_key: Some(IdempotencyKey::parse("k").unwrap()),
    };
    block_on(runner.run(&ask, &mut Silent, std::future::pending())).unwrap();
    let (turns, unconfirmed, keys, _) = store.counts();
    assert_eq!((unconfirmed, keys), (0, 1));
    assert!(
        turns <= 30,
        "no more than before the upgrade: the old turns go as they age: {turns}"
    );
    let memory: Vec<String> = store
        .recent_turns(20)
        .unwrap()
        .into_iter()
        .map(|t| t.user_content)
        .collect();
    assert_eq!(memory.first().map(String::as_str), Some("before 12"));
    assert_eq!(memory.last().map(String::as_str), Some("after the upgrade"));
    let version: i64 = conn
        .query_row("SELECT schema_version FROM actor_meta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, chat_core::sql::actor::SCHEMA_VERSION);
    // One row per turn and per key: no index but the tables themselves (`answered_keys`
    // and `tickets` are their own keys, without rowid; `turns` is keyed by its slot).
    let indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('turns', 'answered_keys', 'tickets')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
    for table in ["answered_keys", "tickets"] {
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.ends_with("WITHOUT ROWID"), "{sql}");
    }
    // The ring goes on: the next turns replace the oldest, and twenty turns are kept.
    for n in 0..25 {
        clock.advance(10);
        let ask = TurnAsk {
            message: format!("later {n}"),
            idempotency_key: None,
            ..ask.clone()
        };
        block_on(runner.run(&ask, &mut Silent, std::future::pending())).unwrap();
    }
    assert_eq!(store.counts().0, 20);
    // Opening it again changes nothing.
    ActorDb::open(&conn).unwrap();
}

/// What a transport would have sent: each frame, with who it was for.
#[derive(Default)]
struct Recorder {
    frames: Vec<(Audience, Frame)>,
    answering: Vec<bool>,
}

impl TurnSink for Recorder {
    fn frame(&mut self, to: Audience, frame: &Frame) {
        self.frames.push((to, frame.clone()));
    }
    fn answering(&mut self, replayed: bool) {
        self.answering.push(replayed);
    }
}

/// A recorder the test reads while the turn runs (its stop watches it).
struct Shared<'a>(&'a RefCell<Recorder>);

impl TurnSink for Shared<'_> {
    fn frame(&mut self, to: Audience, f: &Frame) {
        self.0.borrow_mut().frame(to, f)
    }
}

impl Recorder {
    fn deltas(&self) -> Vec<String> {
        self.frames
            .iter()
            .filter_map(|(_, f)| match f {
                Frame::Delta { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }
    fn seqs(&self) -> Vec<i64> {
        self.frames.iter().map(|(_, f)| f.seq()).collect()
    }
}

fn reply_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["reply"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn paced() -> Paced<Yield> {
    Paced {
        piece_ms: 20,
        pause: Yield,
    }
}

#[test]
fn a_turn_streams_numbered_frames_and_a_replay_goes_to_its_asker_only() {
    let g = Game::new();
    let instance = g.instance();
    let engine = paced();
    let runner = instance.runner(&engine);
    let mut sink = Recorder::default();
    let ask = g.ask("thank you, you are kind", Some("k1"));
    let answered = block_on(runner.run(&ask, &mut sink, std::future::pending())).unwrap();
    assert_eq!(sink.answering, [false]);
    assert!(
        matches!(&sink.frames[0], (Audience::Session, Frame::Player { message, .. }) if message == "thank you, you are kind")
    );
    assert!(sink.deltas().len() > 3, "{:?}", sink.deltas());
    assert_eq!(sink.deltas().concat(), reply_of(&answered.body));
    assert!(
        matches!(sink.frames.last(), Some((Audience::Session, Frame::Done { answer, .. })) if *answer == answered.body)
    );
    assert!(
        sink.seqs().windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        sink.seqs()
    );
    assert!(sink.frames.iter().all(|(to, _)| *to == Audience::Session));
    // A retry of the key: the same answer, to who asked, the reply in one piece, numbered
    // after everything sent before.
    let mut again = Recorder::default();
    let replayed = block_on(runner.run(&ask, &mut again, std::future::pending())).unwrap();
    assert!(replayed.replayed);
    assert_eq!(replayed.body, answered.body);
    assert_eq!(again.answering, [true]);
    assert_eq!(again.deltas(), [reply_of(&answered.body)]);
    assert!(again.frames.iter().all(|(to, _)| *to == Audience::Asker));
    assert!(again.seqs()[0] > *sink.seqs().last().unwrap());
    // Refusals are known before anything is told.
    let mut refused = Recorder::default();
    let edited = g.ask("something else", Some("k1"));
    let failed = block_on(runner.run(&edited, &mut refused, std::future::pending())).unwrap_err();
    assert_eq!((failed.error, failed.told), (TurnError::KeyReused, false));
    assert!(refused.frames.is_empty() && refused.answering.is_empty());
}

#[test]
fn a_stop_while_the_engine_writes_queues_nothing_and_frees_the_key() {
    let mut g = Game::new();
    let instance = g.instance();
    let engine = paced();
    let runner = instance.runner(&engine);
    let ask = g.ask("tell me about your day", Some("k-stop"));
    // The player stops once two pieces were shown.
    let sink = RefCell::new(Recorder::default());
    let stop = std::future::poll_fn(|_| {
        if sink.borrow().deltas().len() >= 2 {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    let stopped = block_on(runner.run(&ask, &mut Shared(&sink), stop)).unwrap_err();
    assert_eq!(
        (stopped.error.clone(), stopped.told),
        (TurnError::Stopped, true)
    );
    let shown = sink.borrow().deltas().len();
    assert!(
        (2..4).contains(&shown),
        "stopped after two pieces, not at the end: {shown}"
    );
    assert!(matches!(
        sink.borrow().frames.last(),
        Some((
            Audience::Session,
            Frame::Error {
                code: "stopped",
                ..
            }
        ))
    ));
    assert!(g.queue.sent.borrow().is_empty(), "nothing queued");
    assert_eq!(
        ActorDb::open(&g.actor).unwrap().counts(),
        (0, 0, 0, 0),
        "nothing is bound"
    );
    drop(instance);
    // The key may be played again, to the end.
    let answered = g.turn("tell me about your day", Some("k-stop")).unwrap();
    assert!(!answered.replayed);
    g.consume();
    assert_eq!(g.stored(), 1, "one turn, the one played to the end");
}

/// One socket's view: the session's frames (a played turn) and the ones sent to it alone.
#[derive(Default)]
struct Socket {
    received: Vec<String>,
}

impl Socket {
    fn seqs(&self) -> Vec<i64> {
        self.received.iter().map(|f| seq_of(f).unwrap()).collect()
    }
}

/// A played turn's frames go to every socket of the session.
struct Broadcast<'a>(&'a RefCell<Vec<Socket>>);

impl TurnSink for Broadcast<'_> {
    fn frame(&mut self, to: Audience, frame: &Frame) {
        if to == Audience::Session {
            for socket in self.0.borrow_mut().iter_mut() {
                socket.received.push(frame.to_json());
            }
        }
    }
}

#[test]
fn a_socket_refused_while_a_turn_runs_sees_numbers_go_up_and_a_reconnect_gets_the_rest() {
    let g = Game::new();
    let instance = g.instance();
    let engine = paced();
    let runner = instance.runner(&engine);
    let sockets = RefCell::new(vec![Socket::default(), Socket::default()]);
    let ask = g.ask("tell me a long story", Some("k-live"));
    let mut broadcast = Broadcast(&sockets);
    let turn = runner.run(&ask, &mut broadcast, std::future::pending());
    // Socket 1 asks to stop a key that is not being written, once the turn's first delta
    // went out: it is refused, on its own, in the middle of the turn.
    let refusal = async {
        std::future::poll_fn(|_| {
            let seen = sockets.borrow()[1].received.len();
            if seen >= 2 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        let frame = instance
            .memory
            .frames
            .borrow_mut()
            .refusal(
                g.clock.now_ms(),
                Some(&IdempotencyKey::parse("unknown").unwrap()),
                &Refusal::invalid("nothing_to_stop", "no turn with this key is being written"),
            )
            .expect("a number for the refusal");
        sockets.borrow_mut()[1].received.push(frame.to_json());
        frame.seq()
    };
    let (answered, refused_at) = block_on(join(turn, refusal));
    let answered = answered.unwrap();
    let sockets = sockets.into_inner();
    for (n, socket) in sockets.iter().enumerate() {
        let seqs = socket.seqs();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "socket {n} saw numbers go back: {seqs:?}"
        );
    }
    let refused = &sockets[1];
    let at = refused
        .seqs()
        .iter()
        .position(|s| *s == refused_at)
        .unwrap();
    assert!(
        at > 1 && at + 1 < refused.received.len(),
        "the refusal came mid-turn"
    );
    // Socket 1 drops right after its refusal; a new socket asks for what came after it.
    let missed = instance.memory.frames.borrow().after(refused_at);
    assert_eq!(missed, refused.received[at + 1..].to_vec());
    let done: serde_json::Value = serde_json::from_str(missed.last().unwrap()).unwrap();
    assert_eq!(done["type"], "done");
    assert_eq!(done["answer"]["reply"], reply_of(&answered.body));
    // A reconnect after any number it received gets everything after it, done included
    // (and the refusal socket 1 was sent, which a client ignores: not its key).
    for (i, seq) in sockets[0].seqs().iter().enumerate() {
        let missed: Vec<String> = instance
            .memory
            .frames
            .borrow()
            .after(*seq)
            .into_iter()
            .filter(|f| !f.contains("nothing_to_stop"))
            .collect();
        assert_eq!(missed, sockets[0].received[i + 1..].to_vec(), "after {seq}");
    }
}

#[test]
fn numbers_go_on_after_a_reset_and_a_reconnect_gets_the_last_turn_rebuilt() {
    let g = Game::new();
    let first = {
        let instance = g.instance();
        let sockets = RefCell::new(vec![Socket::default()]);
        block_on(instance.runner(&paced()).run(
            &g.ask("hello", Some("k1")),
            &mut Broadcast(&sockets),
            std::future::pending(),
        ))
        .unwrap();
        sockets.into_inner().remove(0)
    };
    // The clock goes back a little (another machine), and the actor starts afresh.
    g.clock.now.set(T0);
    let instance = g.instance();
    let sockets = RefCell::new(vec![Socket::default()]);
    block_on(instance.runner(&paced()).run(
        &g.ask("again", Some("k2")),
        &mut Broadcast(&sockets),
        std::future::pending(),
    ))
    .unwrap();
    let second = sockets.into_inner().remove(0);
    assert!(
        second.seqs()[0] > *first.seqs().last().unwrap(),
        "{:?} then {:?}",
        first.seqs(),
        second.seqs()
    );
    // A refusal between turns is numbered after the turn, and kept.
    let between = instance
        .memory
        .frames
        .borrow_mut()
        .refusal(
            g.clock.now_ms(),
            None,
            &Refusal::invalid("malformed_json", "x"),
        )
        .unwrap();
    assert!(between.seq() > *second.seqs().last().unwrap());
    assert_eq!(
        instance
            .memory
            .frames
            .borrow()
            .after(*second.seqs().last().unwrap()),
        [between.to_json()]
    );
}

#[test]
fn a_stop_race_lets_the_engine_lose_only_before_the_turn_is_bound() {
    // The stop comes with the engine's last piece: whichever wins, the turn is either
    // played whole (bound, queued, answered) or not at all.
    for stop_after in 1..6 {
        let g = Game::new();
        let instance = g.instance();
        let engine = paced();
        let runner = instance.runner(&engine);
        let seen = RefCell::new(Recorder::default());
        let stop = std::future::poll_fn(|_| {
            if seen.borrow().deltas().len() >= stop_after {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        });
        let ask = g.ask("thanks!", Some("k"));
        let outcome = block_on(runner.run(&ask, &mut Shared(&seen), stop));
        let (held, unconfirmed, keys, _) = ActorDb::open(&g.actor).unwrap().counts();
        match outcome {
            Ok(answered) => {
                assert_eq!((held, unconfirmed, keys), (1, 0, 1));
                assert_eq!(g.queue.records().len(), 1);
                assert!(!answered.replayed);
            }
            Err(failed) => {
                assert_eq!(failed.error, TurnError::Stopped);
                assert_eq!((held, keys), (0, 0));
                assert!(g.queue.sent.borrow().is_empty());
            }
        }
    }
}

#[test]
fn an_instance_that_left_a_turn_unconfirmed_finishes_it_before_its_next_turn() {
    let mut g = Game::new();
    let instance = g.instance();
    let runner = instance.runner(&OfflineEngine);
    let play = |message: &str, key: &str| {
        g.clock.advance(10);
        block_on(runner.run(
            &g.ask(message, Some(key)),
            &mut Silent,
            std::future::pending(),
        ))
        .map_err(|f| f.error)
    };
    play("hello", "k1").unwrap();
    // The same instance: its queue refuses a send, and the turn stays bound.
    g.queue.fail_next(QueueFault::Fail);
    assert!(matches!(
        play("I hate you, you are stupid", "k2"),
        Err(TurnError::QueueUnavailable(_))
    ));
    // Its next turn sends that one first, which ends the game.
    assert_eq!(play("sorry", "k3"), Err(TurnError::Ended));
    assert_eq!(g.queue.resent.get(), 1);
    drop(instance);
    let applied = g.consume();
    assert_eq!((applied.applied, applied.duplicates), (2, 0));
}
