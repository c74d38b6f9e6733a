//! A batch of the turn queue, from decode to ack.
//!
//! 1. Decode every message. A permanent failure (undecodable, unknown version, invalid) is
//!    dead-lettered at once. A move's probe is answered: the databases this Worker reaches
//!    are reported in the control database.
//! 2. Route each turn by its player's bucket, with the live bucket map ([`MapCache`]). When
//!    the control database cannot be read, the last map read (or `SHARD_MAP`) routes on, so
//!    that the other databases' players are stored: each database refuses the writes of a
//!    bucket it has fenced, so a stale map can only send a turn where it is refused and
//!    held, never where it would be lost. A turn is held, too, when its bucket is moving,
//!    when its database refused it, or when this Worker has no binding for that database:
//!    held turns are retried with backoff, and on their last delivery sent again as fresh
//!    messages, so waiting never makes a dead letter.
//! 3. Write each database's turns concurrently, cut into chunks under D1's value limit
//!    (`batch::turn_chunks`; a typical batch is one chunk), each chunk in ONE atomic batch.
//! 4. Judge every delivery against what was stored before: applied and duplicates are acked;
//!    a conflict (a turn id reused for a different turn) is dead-lettered.
//! 5. If a chunk's write failed, each of its messages is retried with exponential backoff and
//!    jitter, or, on its last attempt, dead-lettered with the error. One bad message, one
//!    failed chunk or one failed database never holds back the rest of the batch.
//!
//! Dead letters go to the dead-letter queue in an envelope with their class and error, and
//! their message is acked only once that send succeeded: nothing is dropped.

use super::ports::{Control, Delivery, Ledgers, Queues, Stored, Write};
use super::{retry_later, Event, Settings};
use crate::batch::{
    first_arrivals, is_fenced, judge, turn_chunks_tagged, turns_json_seen, Outcome,
};
use crate::clock::Clock;
use crate::d1_limits::MAX_BOUND_JSON_BYTES;
use crate::dead_letter::Envelope;
use crate::failure::{on_transient, FailureClass, TransientAction};
use crate::live_map::MapCache;
use crate::probe::Probe;
use crate::record::TurnRecord;
use futures_util::future::join_all;
use std::collections::{BTreeMap, HashSet};

/// What a batch did: its counts, and what its log says.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub received: usize,
    pub probes: usize,
    pub applied: usize,
    pub duplicate: usize,
    pub conflict: usize,
    pub invalid: usize,
    pub retried: usize,
    pub held: usize,
    pub dead_lettered: usize,
    /// Deliveries of turns found in the archive (counted as duplicates too).
    pub archived: usize,
    /// Deliveries of an erased player's turns, refused and acked.
    pub erased: usize,
    /// Chunks written, and statements sent in them.
    pub chunks: usize,
    pub statements: usize,
    /// The slowest database's write time.
    pub write_ms: i64,
    /// One line per database: received, applied, retried, held.
    pub databases: Vec<String>,
    /// What went wrong or deserves a line, in order.
    pub events: Vec<Event>,
}

impl Report {
    fn add(&mut self, part: &Report) {
        self.applied += part.applied;
        self.duplicate += part.duplicate;
        self.conflict += part.conflict;
        self.retried += part.retried;
        self.archived += part.archived;
        self.erased += part.erased;
        self.chunks += part.chunks;
        self.statements += part.statements;
        self.write_ms = self.write_ms.max(part.write_ms);
        self.events.extend(part.events.iter().cloned());
    }
}

/// A decoded delivery.
type Valid<'a, D> = (&'a D, TurnRecord);
/// Dead letters to send, with their messages.
type Letters<'a, D> = Vec<(&'a D, Envelope)>;

/// The ports a batch runs over.
pub struct Ports<'a, L, C, Q, T> {
    pub ledgers: &'a L,
    pub control: &'a C,
    pub queues: &'a Q,
    pub clock: &'a T,
}

/// Handles one batch of the turn queue: every message is acked, retried or dead-lettered
/// before this returns.
pub async fn consume<D, L, C, Q, T>(
    messages: &[D],
    ports: &Ports<'_, L, C, Q, T>,
    settings: &Settings,
    cache: &MapCache,
) -> Report
where
    D: Delivery,
    L: Ledgers,
    C: Control,
    Q: Queues,
    T: Clock,
{
    let clock = ports.clock;
    let mut report = Report {
        received: messages.len(),
        ..Report::default()
    };
    let mut letters: Letters<'_, D> = Vec::new();

    let mut valid: Vec<Valid<'_, D>> = Vec::new();
    let mut probes: Vec<(&D, Probe)> = Vec::new();
    for m in messages {
        if let Some(probe) = Probe::parse(m.body()) {
            probes.push((m, probe));
            continue;
        }
        match TurnRecord::decode(m.body()) {
            Ok(record) => valid.push((m, record)),
            Err(e) => {
                report.invalid += 1;
                let class = FailureClass::from(&e);
                letters.push((m, letter(m, class, &e.to_string(), clock.now_ms(), clock)));
            }
        }
    }
    report.probes = probes.len();

    // A delivery the ledger refuses before any write fails alone, as if its write had.
    let mut refused: Vec<(&Valid<'_, D>, String)> = Vec::new();
    let mut routed: Vec<&Valid<'_, D>> = Vec::new();
    for delivery in &valid {
        match ports.ledgers.refuses(&delivery.1, delivery.0.attempts()) {
            Some(error) => refused.push((delivery, error)),
            None => routed.push(delivery),
        }
    }
    for (delivery, error) in &refused {
        failed(
            &[*delivery],
            error,
            settings,
            clock,
            &mut report,
            &mut letters,
        );
    }

    for (m, probe) in &probes {
        answer_probe(*m, probe, ports, settings, &mut report.events).await;
    }

    let mut per_database: BTreeMap<String, Vec<&Valid<'_, D>>> = BTreeMap::new();
    let mut held: Vec<&D> = Vec::new();
    if !routed.is_empty() {
        let live = cache
            .live(
                clock.now_ms(),
                &settings.shard_map,
                settings.map_cache_ms,
                ports.control.overrides(),
            )
            .await;
        if let Ok((_, Some(unread))) = &live {
            report.events.push(Event::ControlUnreadable {
                error: format!("reading the bucket map's overrides: {}", unread.error),
                cached: unread.cached,
            });
        }
        match live {
            Ok((map, _)) => {
                for delivery in routed {
                    let user = delivery.1.user.id;
                    if map.is_moving(&user) {
                        held.push(delivery.0);
                    } else {
                        per_database
                            .entry(map.binding(&user).to_owned())
                            .or_default()
                            .push(delivery);
                    }
                }
            }
            Err(error) => {
                report.events.push(Event::MapUnusable {
                    error: error.clone(),
                });
                failed(&routed, &error, settings, clock, &mut report, &mut letters);
            }
        }
    }

    let written = join_all(
        per_database
            .iter()
            .map(|(binding, deliveries)| write_database(binding, deliveries, ports, settings)),
    )
    .await;
    for ((binding, deliveries), (part, part_letters, part_held)) in per_database.iter().zip(written)
    {
        report.databases.push(format!(
            "{binding}:{} received, {} applied, {} retried, {} held",
            deliveries.len(),
            part.applied,
            part.retried,
            part_held.len()
        ));
        report.add(&part);
        letters.extend(part_letters);
        held.extend(part_held);
    }
    report.held = held.len();
    hold(&held, ports, settings, &mut report.events).await;

    report.dead_lettered = letters.len();
    if !letters.is_empty() {
        dead_letter(&letters, ports, settings, &mut report.events).await;
    }
    report
}

fn letter<D: Delivery, T: Clock>(
    m: &D,
    class: FailureClass,
    error: &str,
    first_failed_at: i64,
    clock: &T,
) -> Envelope {
    Envelope::new(
        m.id(),
        m.body(),
        class,
        error,
        m.attempts(),
        first_failed_at,
        clock.now_ms(),
    )
}

/// Answers a move's probe: reports every database this Worker is bound to, with the newest
/// migration applied to each, in the control database. Acked once reported; retried if the
/// control database cannot take the report.
async fn answer_probe<D, L, C, Q, T>(
    m: &D,
    probe: &Probe,
    ports: &Ports<'_, L, C, Q, T>,
    settings: &Settings,
    events: &mut Vec<Event>,
) where
    D: Delivery,
    L: Ledgers,
    C: Control,
    T: Clock,
{
    let mut reports = Vec::new();
    for binding in ports.ledgers.bindings() {
        let migration = ports
            .ledgers
            .applied_migration(&binding)
            .await
            .ok()
            .flatten();
        reports.push((binding, migration));
    }
    match ports
        .control
        .report_databases(&reports, probe.requested_at)
        .await
    {
        Ok(()) => {
            events.push(Event::ProbeAnswered { databases: reports });
            m.ack();
        }
        Err(error) => {
            events.push(Event::ProbeFailed { error });
            retry_later(m, settings, ports.clock);
        }
    }
}

/// Writes one database's deliveries, chunk by chunk; returns its counts, its dead letters,
/// and the deliveries to hold: those the database refused (a fenced bucket), or all of them
/// when this Worker has no binding for it.
async fn write_database<'a, D, L, C, Q, T>(
    binding: &str,
    deliveries: &[&'a Valid<'a, D>],
    ports: &Ports<'_, L, C, Q, T>,
    settings: &Settings,
) -> (Report, Letters<'a, D>, Vec<&'a D>)
where
    D: Delivery,
    L: Ledgers,
    T: Clock,
{
    let clock = ports.clock;
    let mut part = Report::default();
    let mut letters: Letters<'a, D> = Vec::new();
    if !ports.ledgers.has(binding) {
        // A database the chat Worker routes to but this Worker is not bound to: a deploy is
        // missing a binding. Waiting loses nothing; a dead letter would need a replay.
        part.events.push(Event::Unbound {
            database: binding.to_owned(),
            turns: deliveries.len(),
        });
        return (part, letters, deliveries.iter().map(|d| d.0).collect());
    }
    let mut held: Vec<&'a D> = Vec::new();
    let tag = |u: &uuid::Uuid| settings.erasure_tag(u);
    for chunk in turn_chunks_tagged(deliveries, |d| &d.1, MAX_BOUND_JSON_BYTES, &tag) {
        part.chunks += 1;
        let deliveries: Vec<&Valid<'a, D>> =
            chunk.deliveries.iter().map(|&i| deliveries[i]).collect();
        let write = Write {
            json: &chunk.json,
            turns: deliveries.iter().map(|(m, r)| (r, m.attempts())).collect(),
        };
        let started = clock.now_ms();
        let outcome = ports.ledgers.apply_turns(binding, &write).await;
        part.write_ms += clock.now_ms() - started;
        match outcome {
            Ok(stored) => {
                part.statements += stored.statements;
                let covered = settle(
                    binding,
                    deliveries,
                    &stored,
                    clock,
                    &mut part,
                    &mut letters,
                    &mut held,
                );
                if !covered.is_empty() {
                    archived(
                        binding,
                        covered,
                        &stored,
                        ports,
                        settings,
                        &mut part,
                        &mut letters,
                        &mut held,
                    )
                    .await;
                }
            }
            Err(error) => {
                part.events.push(Event::WriteFailed {
                    database: binding.to_owned(),
                    error: error.clone(),
                    turns: deliveries.len(),
                });
                failed(
                    &deliveries,
                    &error,
                    settings,
                    clock,
                    &mut part,
                    &mut letters,
                );
            }
        }
    }
    (part, letters, held)
}

/// Judges a chunk's deliveries against what its write found, acks the stored and the
/// duplicates, letters the conflicts, and holds a fenced bucket's turns. Returns the turns
/// an object of the archive covers, which the write skipped: they may be archived already.
fn settle<'a, 'b, D: Delivery, T: Clock>(
    binding: &str,
    deliveries: Vec<&'b Valid<'a, D>>,
    stored: &Stored,
    clock: &T,
    part: &mut Report,
    letters: &mut Letters<'a, D>,
    held: &mut Vec<&'a D>,
) -> Vec<&'b Valid<'a, D>> {
    // A fenced bucket's turns were not written here: they wait for the map that sends them
    // to the bucket's home.
    let (fenced, deliveries): (Vec<&Valid<'a, D>>, Vec<&Valid<'a, D>>) = deliveries
        .into_iter()
        .partition(|d| is_fenced(&stored.fenced, &d.1.user.id));
    held.extend(fenced.iter().map(|d| d.0));
    // An erased player's turn (made before the erasure): written nowhere, and done with.
    let erased_ids: HashSet<&str> = stored.erased.iter().map(String::as_str).collect();
    let (erased, deliveries): (Vec<&Valid<'a, D>>, Vec<&Valid<'a, D>>) = deliveries
        .into_iter()
        .partition(|d| erased_ids.contains(d.1.turn_id.to_string().as_str()));
    part.erased += erased.len();
    erased.iter().for_each(|d| d.0.ack());
    let covered_ids: HashSet<&str> = stored.archived.iter().map(|h| h.turn_id.as_str()).collect();
    let (covered, deliveries): (Vec<&Valid<'a, D>>, Vec<&Valid<'a, D>>) = deliveries
        .into_iter()
        .partition(|d| covered_ids.contains(d.1.turn_id.to_string().as_str()));
    let mut applied = 0;
    let outcomes = judge(&deliveries, |d| &d.1, &stored.before);
    for ((m, r), o) in deliveries.iter().map(|d| (d.0, &d.1)).zip(outcomes) {
        match o {
            Outcome::Applied => applied += 1,
            Outcome::Duplicate => part.duplicate += 1,
            Outcome::Conflict => {
                part.conflict += 1;
                let error = format!("turn {} is stored with a different turn", r.turn_id);
                let now = clock.now_ms();
                letters.push((m, letter(m, FailureClass::Conflict, &error, now, clock)));
                continue;
            }
        }
        m.ack();
    }
    part.applied += applied;
    if applied != stored.inserted {
        part.events.push(Event::CountsDisagree {
            database: binding.to_owned(),
            judged: applied,
            inserted: stored.inserted,
        });
    }
    covered
}

/// Turns D1 does not hold whose time falls in what the archive holds of their player:
/// each is looked for in the objects of its session that cover its time. One found there
/// was applied before it was archived: a duplicate (or a conflict). One not found is
/// written, its row saying how many of the player's objects were committed when the
/// consumer looked, so that the write skips it only if another was committed since; then
/// it is held for a later delivery. An archive that cannot be read retries them.
#[allow(clippy::too_many_arguments)]
async fn archived<'a, 'b, D, L, C, Q, T>(
    binding: &str,
    covered: Vec<&'b Valid<'a, D>>,
    stored: &Stored,
    ports: &Ports<'_, L, C, Q, T>,
    settings: &Settings,
    part: &mut Report,
    letters: &mut Letters<'a, D>,
    held: &mut Vec<&'a D>,
) where
    D: Delivery,
    L: Ledgers,
    T: Clock,
{
    let clock = ports.clock;
    let lookups: Vec<crate::archive::Lookup> = covered
        .iter()
        .map(|(_, r)| crate::archive::Lookup {
            user_id: r.user.id.to_string(),
            session_id: r.session_id.to_string(),
            at: r.user_message.created_at,
        })
        .collect();
    let found = match ports.ledgers.archived_turns(&lookups).await {
        Ok(found) => found,
        Err(error) => {
            part.events.push(Event::ArchiveUnreadable {
                database: binding.to_owned(),
                error: error.clone(),
                turns: covered.len(),
            });
            failed(&covered, &error, settings, clock, part, letters);
            return;
        }
    };
    let found_ids: HashSet<&str> = found.iter().map(|t| t.id.as_str()).collect();
    let (in_archive, fresh): (Vec<&Valid<'a, D>>, Vec<&Valid<'a, D>>) = covered
        .into_iter()
        .partition(|d| found_ids.contains(d.1.turn_id.to_string().as_str()));
    part.archived += in_archive.len();
    let outcomes = judge(&in_archive, |d| &d.1, &found);
    for ((m, r), o) in in_archive.iter().map(|d| (d.0, &d.1)).zip(outcomes) {
        if o == Outcome::Conflict {
            part.conflict += 1;
            let error = format!("turn {} is archived with a different turn", r.turn_id);
            letters.push((
                m,
                letter(m, FailureClass::Conflict, &error, clock.now_ms(), clock),
            ));
            continue;
        }
        part.duplicate += 1;
        m.ack();
    }
    if fresh.is_empty() {
        return;
    }
    let seen = |turn: &str| {
        stored
            .archived
            .iter()
            .find(|h| h.turn_id == turn)
            .map_or(0, |h| h.objects)
    };
    let firsts = first_arrivals(&fresh, |d| &d.1);
    let json = turns_json_seen(
        firsts.iter().map(|&i| {
            let r = &fresh[i].1;
            (r, seen(&r.turn_id.to_string()))
        }),
        &|u| settings.erasure_tag(u),
    );
    let write = Write {
        json: &json,
        turns: fresh.iter().map(|(m, r)| (r, m.attempts())).collect(),
    };
    match ports.ledgers.apply_turns(binding, &write).await {
        Ok(again) => {
            part.statements += again.statements;
            // Covered again: an object was committed since the look. It waits.
            let covered = settle(binding, fresh, &again, clock, part, letters, held);
            held.extend(covered.iter().map(|d| d.0));
        }
        Err(error) => {
            part.events.push(Event::WriteFailed {
                database: binding.to_owned(),
                error: error.clone(),
                turns: fresh.len(),
            });
            failed(&fresh, &error, settings, clock, part, letters);
        }
    }
}

/// Deliveries whose write failed: each is retried with backoff, or dead-lettered as
/// transient on its last attempt.
fn failed<'a, D: Delivery, T: Clock>(
    deliveries: &[&Valid<'a, D>],
    error: &str,
    settings: &Settings,
    clock: &T,
    report: &mut Report,
    letters: &mut Letters<'a, D>,
) {
    for (m, _) in deliveries.iter().copied() {
        match on_transient(
            m.attempts(),
            settings.max_retries,
            &settings.backoff,
            clock.unit_random(),
        ) {
            TransientAction::Retry { delay_seconds } => {
                report.retried += 1;
                m.retry(delay_seconds);
            }
            TransientAction::DeadLetter => {
                let first = m.sent_at();
                letters.push((m, letter(*m, FailureClass::Transient, error, first, clock)));
            }
        }
    }
}

/// Turns that wait (a moving or fenced bucket, a database without a binding here) stay in
/// the queue: retried with backoff, and on their last delivery (where a retry would let the
/// queue dead-letter them) sent again as fresh messages and acked. Waiting never makes a
/// dead letter.
async fn hold<D, L, C, Q, T>(
    held: &[&D],
    ports: &Ports<'_, L, C, Q, T>,
    settings: &Settings,
    events: &mut Vec<Event>,
) where
    D: Delivery,
    Q: Queues,
    T: Clock,
{
    let (last, wait): (Vec<&D>, Vec<&D>) = held
        .iter()
        .partition(|m| m.attempts() > settings.max_retries);
    for m in wait {
        retry_later(m, settings, ports.clock);
    }
    if last.is_empty() {
        return;
    }
    let bodies: Vec<String> = last.iter().map(|m| m.body().to_owned()).collect();
    match ports.queues.send_turns(&bodies).await {
        Ok(()) => {
            last.iter().for_each(|m| m.ack());
            events.push(Event::Requeued { turns: last.len() });
        }
        Err(error) => {
            events.push(Event::RequeueFailed {
                error,
                turns: last.len(),
            });
            last.iter()
                .for_each(|m| m.retry(settings.backoff.delay_seconds(m.attempts(), 0.5)));
        }
    }
}

/// Sends the letters to the dead-letter queue, then acks their messages; if the send fails
/// they are retried instead, so a letter is never lost.
async fn dead_letter<D, L, C, Q, T>(
    letters: &[(&D, Envelope)],
    ports: &Ports<'_, L, C, Q, T>,
    settings: &Settings,
    events: &mut Vec<Event>,
) where
    D: Delivery,
    Q: Queues,
    T: Clock,
{
    for (m, e) in letters {
        events.push(Event::DeadLettering {
            message_id: m.id().to_owned(),
            class: e.class.as_str(),
            error: e.error.clone(),
        });
    }
    let texts: Vec<String> = letters
        .iter()
        .map(|(_, e)| e.encode_within(Envelope::MAX_BYTES))
        .collect();
    match ports.queues.send_letters(&texts).await {
        Ok(()) => letters.iter().for_each(|(m, _)| m.ack()),
        Err(error) => {
            events.push(Event::LetterSendFailed {
                error,
                letters: letters.len(),
            });
            letters
                .iter()
                .for_each(|(m, _)| retry_later(*m, settings, ports.clock));
        }
    }
}
