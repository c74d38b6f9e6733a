//! The session actor's turn flow (`chat_core::turn::play`) natively: the actor's own SQL on
//! SQLite, an in-memory queue whose sends can fail or be followed by a reset of the actor,
//! the offline engine, a clock the test moves, and the consumer's batch on a second SQLite
//! database. A "reset" drops everything held in memory and opens the same storage again.

use chat_core::character::{Character, Locale};
use chat_core::engine::OfflineEngine;
use chat_core::identity::{AuthProvider, Identity};
use chat_core::native::actor::{block_on, ActorDb, MemoryQueue, QueueFault, TestClock};
use chat_core::native::{apply_turns, open_in_memory, start_session};
use chat_core::session::{SessionState, TurnAsk, ANSWER_KEEP_MS};
use chat_core::turn::{begin, finish, play, Answered, Begun, Silent, TurnError, TurnSink};
use rusqlite::Connection;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

struct Game {
    actor: Connection,
    d1: Connection,
    queue: MemoryQueue,
    clock: TestClock,
    player: Identity,
    session: Uuid,
}

impl Game {
    fn new() -> Self {
        let actor = Connection::open_in_memory().unwrap();
        let player = Identity::new(AuthProvider::X, "flow-player").unwrap();
        let session = Uuid::now_v7();
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
        start_session(&d1, &player, session, T0).unwrap();
        Self {
            actor,
            d1,
            queue: MemoryQueue::default(),
            clock: TestClock::at(T0 + 1_000),
            player,
            session,
        }
    }

    fn ask(&self, message: &str, key: Option<&str>) -> TurnAsk {
        TurnAsk {
            session_id: self.session,
            identity: self.player.clone(),
            message: message.into(),
            locale: None,
            idempotency_key: key.map(str::to_owned),
        }
    }

    /// One request, on a freshly opened actor (as after any reset).
    fn turn(&self, message: &str, key: Option<&str>) -> Result<Answered, TurnError> {
        self.clock.advance(10);
        let store = ActorDb::open(&self.actor).unwrap();
        block_on(play(
            &store,
            &self.queue,
            &OfflineEngine,
            &self.clock,
            &self.ask(message, key),
            20,
            &mut Silent,
        ))
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
}

#[test]
fn a_reset_after_the_send_is_answered_by_the_retry_and_stored_once() {
    let mut g = Game::new();
    g.queue.fail_next(QueueFault::ResetAfterSend);
    let first = g.turn("you are kind", Some("k1"));
    assert!(
        matches!(first, Err(TurnError::QueueUnavailable(_))),
        "{first:?}"
    );
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
fn an_unkeyed_turn_that_failed_is_not_sent_behind_the_players_back() {
    let mut g = Game::new();
    g.queue.fail_next(QueueFault::Fail);
    assert!(g.turn("hi", None).is_err());
    g.turn("hi again", None).unwrap();
    g.consume();
    assert_eq!(g.stored(), 1, "only the turn that was answered");
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
    let conn = Connection::open_in_memory().unwrap();
    let store = ActorDb::open(&conn).unwrap();
    let player = Identity::new(AuthProvider::X, "nobody").unwrap();
    let ask = TurnAsk {
        session_id: Uuid::now_v7(),
        identity: player,
        message: "hi".into(),
        locale: None,
        idempotency_key: Some("k".into()),
    };
    let queue = MemoryQueue::default();
    let result = block_on(play(
        &store,
        &queue,
        &OfflineEngine,
        &TestClock::at(T0),
        &ask,
        20,
        &mut Silent,
    ));
    assert_eq!(result, Err(TurnError::NotFound));
    let objects: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(objects, 0, "nothing was created");
    assert!(queue.sent.borrow().is_empty());
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
    conn.execute(
        "INSERT INTO turns VALUES (1, 't-old', 'before', 'reply', 2, 'happy', ?1)",
        [T0],
    )
    .unwrap();
    let store = ActorDb::open(&conn).unwrap();
    let queue = MemoryQueue::default();
    let ask = TurnAsk {
        session_id: session,
        identity: player,
        message: "after the upgrade".into(),
        locale: None,
        idempotency_key: Some("k".into()),
    };
    block_on(play(
        &store,
        &queue,
        &OfflineEngine,
        &TestClock::at(T0 + 5),
        &ask,
        20,
        &mut Silent,
    ))
    .unwrap();
    let (turns, unconfirmed, keys, _) = store.counts();
    assert_eq!(
        (turns, unconfirmed, keys),
        (2, 0, 1),
        "the old turn is kept"
    );
    let version: i64 = conn
        .query_row("SELECT schema_version FROM actor_meta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, chat_core::sql::actor::SCHEMA_VERSION);
    // Version 4 writes one row per turn and per key: no index but the tables themselves
    // (`answered_keys` is its own key, without rowid).
    let indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('turns', 'answered_keys')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
    let keys_sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'answered_keys'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(keys_sql.ends_with("WITHOUT ROWID"), "{keys_sql}");
    // Opening it again changes nothing.
    ActorDb::open(&conn).unwrap();
}

/// What a transport would have sent: the message, then each piece of the reply.
#[derive(Default)]
struct Recorder {
    begun: Vec<String>,
    deltas: Vec<String>,
}

impl TurnSink for Recorder {
    fn begin(&mut self, message: &str) {
        self.begun.push(message.to_owned());
    }
    fn delta(&mut self, text: &str) {
        self.deltas.push(text.to_owned());
    }
}

fn reply_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["reply"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_turn_streams_its_reply_in_pieces_and_a_replay_in_one() {
    let g = Game::new();
    let store = ActorDb::open(&g.actor).unwrap();
    let engine = chat_core::engine::Paced {
        piece_ms: 20,
        pause: chat_core::native::actor::Yield,
    };
    let mut sink = Recorder::default();
    let ask = g.ask("thank you, you are kind", Some("k1"));
    let answered = block_on(play(
        &store, &g.queue, &engine, &g.clock, &ask, 20, &mut sink,
    ))
    .unwrap();
    assert_eq!(sink.begun, ["thank you, you are kind"]);
    assert!(sink.deltas.len() > 3, "{:?}", sink.deltas);
    assert_eq!(sink.deltas.concat(), reply_of(&answered.body));
    // A retry of the key: the same answer, told as one piece.
    let mut again = Recorder::default();
    let replayed = block_on(play(
        &store, &g.queue, &engine, &g.clock, &ask, 20, &mut again,
    ))
    .unwrap();
    assert!(replayed.replayed);
    assert_eq!(replayed.body, answered.body);
    assert_eq!(again.deltas, [reply_of(&answered.body)]);
    // Refusals are known before anything is told.
    let mut refused = Recorder::default();
    let edited = g.ask("something else", Some("k1"));
    assert_eq!(
        block_on(play(
            &store,
            &g.queue,
            &engine,
            &g.clock,
            &edited,
            20,
            &mut refused
        )),
        Err(TurnError::KeyReused)
    );
    assert!(refused.begun.is_empty() && refused.deltas.is_empty());
}

#[test]
fn a_stop_while_the_engine_writes_queues_nothing_and_frees_the_key() {
    let mut g = Game::new();
    let store = ActorDb::open(&g.actor).unwrap();
    let engine = chat_core::engine::Paced {
        piece_ms: 20,
        pause: chat_core::native::actor::Yield,
    };
    let ask = g.ask("tell me about your day", Some("k-stop"));
    let Begun::Play(session) = block_on(begin(&store, &g.queue, &g.clock, &ask, 20)).unwrap()
    else {
        panic!("a new key plays");
    };
    // The player stops once two pieces were shown.
    let sink = std::cell::RefCell::new(Recorder::default());
    struct Shared<'a>(&'a std::cell::RefCell<Recorder>);
    impl TurnSink for Shared<'_> {
        fn begin(&mut self, m: &str) {
            self.0.borrow_mut().begin(m)
        }
        fn delta(&mut self, t: &str) {
            self.0.borrow_mut().delta(t)
        }
    }
    let stop = std::future::poll_fn(|_| {
        if sink.borrow().deltas.len() >= 2 {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    let stopped = block_on(finish(
        &store,
        &g.queue,
        &engine,
        &g.clock,
        &ask,
        20,
        &session,
        &mut Shared(&sink),
        stop,
    ));
    assert_eq!(stopped, Err(TurnError::Stopped));
    let shown = sink.borrow().deltas.len();
    assert!(
        (2..4).contains(&shown),
        "stopped after two pieces, not at the end: {shown}"
    );
    assert!(g.queue.sent.borrow().is_empty(), "nothing queued");
    assert_eq!(
        ActorDb::open(&g.actor).unwrap().counts().2,
        0,
        "the key is not bound"
    );
    // The key may be played again, to the end.
    let answered = g.turn("tell me about your day", Some("k-stop")).unwrap();
    assert!(!answered.replayed);
    g.consume();
    assert_eq!(g.stored(), 1, "one turn, the one played to the end");
}
