//! End-to-end harness: both Workers on workerd through `wrangler dev`, with the real local D1
//! and queues, started on free ports with a fresh state folder and stopped when dropped.
//!
//! - [`Workers`]: start, talk HTTP to, read the local D1 of, and stop one `wrangler dev`.
//! - [`wait_for`]: poll a condition until it holds or a deadline passes.
//! - [`browser`]: headless Chromium over WebDriver, for the web pages' tests.
//! - [`live`]: clients of the live answers: server-sent events and the session's socket.
//! - [`now_ms`]: the wall clock, as the Workers keep time.
//! - [`fake`]: a loopback HTTP server standing in for X's API or an LLM endpoint.
//! - [`schema_diff`]: two SQLite schemas compared as readers see them.

pub mod browser;
pub mod fake;
pub mod live;
pub mod schema_diff;

use rusqlite::Connection;
use serde_json::Value;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (this crate lives in `tests/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn wrangler() -> Command {
    let mut cmd = Command::new(root().join("node_modules/.bin/wrangler"));
    cmd.current_dir(root())
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true");
    cmd
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The admin token the harness gives the chat Worker.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The key the harness gives the chat Worker to tag session ids with.
pub const SESSION_ID_KEY: &str = "test-session-id-key-0123456789";
/// The `ERASURE_KEY` both Workers get (a secret when deployed): erasures' tombstones are
/// keyed with it.
pub const ERASURE_KEY: &str = "test-erasure-key-0123456789";

/// How to start the Workers.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run the deployable build (`build/`, no test switches) instead of the local one
    /// (`build-local/`, cargo feature `local`) that `scripts/dev.sh` runs.
    pub deployable: bool,
    /// Local D1 databases, the buckets split evenly over them (2 by default, as
    /// `scripts/dev.sh` runs).
    pub databases: usize,
    /// Turn on development auth (`AUTH_MODE=dev` with `ALLOW_DEV_AUTH=local-only`), as the
    /// local scripts do; the deployable config does not.
    pub dev_auth: bool,
    /// More `--var`s for the chat Worker.
    pub chat_vars: Vec<(&'static str, String)>,
    /// Settings of the consumer's `chat-turns` queue consumer (e.g. `max_batch_size`).
    pub consumer_queue: Vec<(&'static str, i64)>,
    /// Settings of the consumer's `chat-turns-dlq` queue consumer (e.g. `max_retries`).
    pub letter_queue: Vec<(&'static str, i64)>,
    /// Variables for the consumer Worker. `wrangler dev --var` reaches only the first config's
    /// Worker, so these go into a copy of `consumer/wrangler.toml` in the state folder.
    pub consumer_vars: Vec<(&'static str, String)>,
    /// Another Worker to serve HTTP in the chat Worker's place: the folder of its crate,
    /// holding its `wrangler.toml` (the benchmark's inline-write Worker, `bench/inline`).
    /// The consumer still runs beside it.
    pub first_worker: Option<&'static str>,
    /// More databases bound in the chat Worker beyond the map's (`DB_n`, `DB_n+1`, …): each
    /// without the migrations the Workers serve on, as a database added before they were
    /// all applied ([`Workers::finish_migrations`] applies the rest). `true` binds it in the
    /// consumer too; `false` leaves the consumer without it, as a deploy that forgot it.
    pub extra_databases: Vec<bool>,
    /// The map's databases (by number) created at schema 1, every migration but the
    /// newest: databases that held turns before schema 2 shipped
    /// ([`Workers::apply_all_migrations`] tries the rest).
    pub schema_one: Vec<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            deployable: false,
            databases: 2,
            dev_auth: true,
            chat_vars: Vec::new(),
            consumer_queue: Vec::new(),
            letter_queue: Vec::new(),
            consumer_vars: Vec::new(),
            first_worker: None,
            extra_databases: Vec::new(),
            schema_one: Vec::new(),
        }
    }
}

/// The local runs' bucket map: two databases, so that routing is always exercised (the
/// deployable default is one database, `DB_0`, with all 256 buckets).
pub const LOCAL_SHARD_MAP: &str = "0-127=DB_0,128-255=DB_1";

/// The bucket map of `n` local databases: the buckets split evenly, in order.
pub fn shard_map_of(n: usize) -> String {
    assert!((1..=16).contains(&n), "1 to 16 local databases");
    if n == 1 {
        return "DB_0".into();
    }
    (0..n)
        .map(|k| format!("{}-{}=DB_{k}", k * 256 / n, (k + 1) * 256 / n - 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// The local databases' bindings: `DB_0` to `DB_{n-1}`.
fn bindings_of(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("DB_{k}")).collect()
}

/// Gives a config `n` local databases (`DB_0` as the file has it, then `DB_1`, … named
/// `chat-k`), absolutizing every `migrations_dir`, and their bucket map; then the `extra`
/// databases `DB_n`, … (not in the map), whose migrations come from `partial`; those of the
/// map's databases in `schema_one` come from `schema_one_dir`.
fn local_databases(
    doc: &mut toml_edit::DocumentMut,
    n: usize,
    extra: &[usize],
    schema_one: &[usize],
    partial: &Path,
    schema_one_dir: &Path,
) {
    let dbs = doc["d1_databases"].as_array_of_tables_mut().unwrap();
    let first = dbs.get(0).expect("DB_0").clone();
    for &k in extra {
        let mut more = first.clone();
        more["binding"] = toml_edit::value(format!("DB_{k}"));
        more["database_name"] = toml_edit::value(format!("chat-{k}"));
        more["database_id"] = toml_edit::value(format!("00000000-0000-4000-8000-{k:012}"));
        more["migrations_dir"] = toml_edit::value(partial.to_string_lossy().into_owned());
        dbs.push(more);
    }
    let dbs = doc["d1_databases"].as_array_of_tables_mut().unwrap();
    for k in 1..n {
        let mut more = first.clone();
        more["binding"] = toml_edit::value(format!("DB_{k}"));
        more["database_name"] = toml_edit::value(format!("chat-{k}"));
        more["database_id"] = toml_edit::value(format!("00000000-0000-4000-8000-{k:012}"));
        dbs.push(more);
    }
    for (k, db) in dbs.iter_mut().enumerate() {
        let binding = db["binding"].as_str().unwrap_or("").to_owned();
        let at_schema_one = schema_one
            .iter()
            .any(|s| binding == format!("DB_{s}") && k < n + extra.len());
        if at_schema_one {
            db["migrations_dir"] = toml_edit::value(schema_one_dir.to_string_lossy().into_owned());
        } else if db["migrations_dir"].as_str() != Some(&*partial.to_string_lossy()) {
            db["migrations_dir"] = toml_edit::value(abs(".", "migrations"));
        }
    }
    doc["vars"]["SHARD_MAP"] = toml_edit::value(shard_map_of(n));
}

/// A copy of `migrations/` in `dir/name` without its newest `leave_out` files.
fn migrations_but(dir: &Path, name: &str, leave_out: usize) -> PathBuf {
    let partial = dir.join(name);
    std::fs::create_dir_all(&partial).unwrap();
    let files = chat_core::native::migration_files(&root().join("migrations")).unwrap();
    for file in &files[..files.len() - leave_out] {
        std::fs::copy(file, partial.join(file.file_name().unwrap())).unwrap();
    }
    partial
}

/// The migrations of a database added before they were all applied: without any the
/// Workers serve on (`sql::SERVING_MIGRATIONS`: up to `0007`), so that `/readyz` names it.
fn partial_migrations(dir: &Path) -> PathBuf {
    migrations_but(dir, "migrations-unfinished", 4)
}

/// The migrations of a database created before schema 2: up to `0008_leaders.sql`. The
/// archive's table is added after, by hand, as an operator does (`Workers::start`).
fn schema_one_migrations(dir: &Path) -> PathBuf {
    migrations_but(dir, "migrations-schema-1", 3)
}

/// The folder of the build a run uses, in each Worker's crate.
fn build_dir(deployable: bool) -> &'static str {
    if deployable {
        "build"
    } else {
        "build-local"
    }
}

/// `path`, relative to the folder `rel` of the repository, made absolute.
fn abs(rel: &str, path: &str) -> String {
    root().join(rel).join(path).to_string_lossy().into_owned()
}

/// A copy of `wrangler.toml` (or of `first`'s) running the chosen build, with absolute
/// paths, written to `dir`.
fn chat_config(
    dir: &Path,
    build: &str,
    databases: usize,
    extra: &[usize],
    schema_one: &[usize],
    first: Option<&str>,
) -> PathBuf {
    let (config, code) = match first {
        Some(folder) => (format!("{folder}/wrangler.toml"), folder),
        None => ("wrangler.toml".to_string(), "producer"),
    };
    let text = std::fs::read_to_string(root().join(&config)).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().expect("the config parses");
    doc["main"] = toml_edit::value(abs(code, &format!("{build}/index.js")));
    if doc.contains_key("assets") {
        doc["assets"]["directory"] = toml_edit::value(abs(".", "web/dist"));
    }
    local_databases(
        &mut doc,
        databases,
        extra,
        schema_one,
        &partial_migrations(dir),
        &schema_one_migrations(dir),
    );
    let path = dir.join("chat.wrangler.toml");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// A copy of `consumer/wrangler.toml` running the chosen build, with absolute paths and
/// `vars` set, written to `dir`.
fn consumer_config(
    dir: &Path,
    build: &str,
    databases: usize,
    extra: &[usize],
    vars: &[(&str, String)],
    queue: &[(&str, i64)],
    letter_queue: &[(&str, i64)],
) -> PathBuf {
    let text = std::fs::read_to_string(root().join("consumer/wrangler.toml")).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().expect("consumer/wrangler.toml parses");
    doc["main"] = toml_edit::value(abs("consumer", &format!("{build}/index.js")));
    local_databases(
        &mut doc,
        databases,
        extra,
        &[],
        &partial_migrations(dir),
        &schema_one_migrations(dir),
    );
    doc["vars"]["ERASURE_KEY"] = toml_edit::value(ERASURE_KEY);
    for (k, v) in vars {
        doc["vars"][k] = toml_edit::value(v.as_str());
    }
    for consumer in doc["queues"]["consumers"]
        .as_array_of_tables_mut()
        .unwrap()
        .iter_mut()
    {
        let settings = match consumer["queue"].as_str() {
            Some("chat-turns") => queue,
            Some("chat-turns-dlq") => letter_queue,
            _ => &[],
        };
        for (k, v) in settings {
            consumer[k] = toml_edit::value(*v);
        }
    }
    let path = dir.join("consumer.wrangler.toml");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// One running `wrangler dev` with both Workers.
pub struct Workers {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
    state: tempfile::TempDir,
    log: PathBuf,
    /// Each local database's SQLite file, by binding (`DB_0` first; the map's, then the
    /// extra ones).
    databases: Vec<(String, PathBuf)>,
    /// How many of `databases` the bucket map uses.
    mapped: usize,
}

/// The local D1 files under `persist`.
fn d1_files(persist: &Path) -> Vec<PathBuf> {
    let dir = persist.join("v3/d1/miniflare-D1DatabaseObject");
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "sqlite") && !p.ends_with("metadata.sqlite")
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Workers {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let build = build_dir(options.deployable);
        for worker in [options.first_worker.unwrap_or("producer"), "consumer"] {
            let built = format!("{worker}/{build}/index.js");
            assert!(
                root().join(&built).exists(),
                "{built} is missing: run scripts/build.sh first"
            );
        }
        let state = tempfile::Builder::new()
            .prefix("chat-e2e-")
            .tempdir()
            .expect("a temp dir");
        let persist = state.path().join("state");
        let log = state.path().join("wrangler.log");
        // Every database gets every migration; the file that appears is that database's.
        let extra: Vec<usize> = (0..options.extra_databases.len())
            .map(|i| options.databases + i)
            .collect();
        let chat = chat_config(
            state.path(),
            build,
            options.databases,
            &extra,
            &options.schema_one,
            options.first_worker,
        );
        let mut databases = Vec::new();
        let mut all = bindings_of(options.databases);
        all.extend(extra.iter().map(|k| format!("DB_{k}")));
        for binding in all {
            let before = d1_files(&persist);
            // wrangler's local migrate runs a runtime per migration, and on a loaded machine
            // one was seen to fail with an assertion of its own ("false == true") halfway.
            // Each migration is applied with its record in one batch, so a second run
            // applies only what is missing; a third failure is a real one.
            let mut attempts = 0;
            loop {
                attempts += 1;
                let status = wrangler()
                    .args([
                        "d1",
                        "migrations",
                        "apply",
                        binding.as_str(),
                        "--local",
                        "-c",
                    ])
                    .arg(&chat)
                    .arg("--persist-to")
                    .arg(&persist)
                    .stdout(
                        File::create(
                            state
                                .path()
                                .join(format!("migrate-{binding}-{attempts}.log")),
                        )
                        .unwrap(),
                    )
                    .stderr(Stdio::inherit())
                    .status()
                    .expect("wrangler runs");
                if status.success() {
                    break;
                }
                assert!(
                    attempts < 3,
                    "applying migrations to {binding} failed {attempts} times"
                );
                eprintln!("applying migrations to {binding} failed; trying again");
            }
            let new: Vec<PathBuf> = d1_files(&persist)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            assert_eq!(new.len(), 1, "{binding} has its own file: {new:?}");
            if options
                .schema_one
                .iter()
                .any(|k| binding == format!("DB_{k}"))
            {
                // A schema-1 database takes 0010 and 0011 by hand: `wrangler d1 execute --file`.
                let conn = rusqlite::Connection::open(&new[0]).unwrap();
                for file in chat_core::sql::BY_HAND_ON_SCHEMA_ONE {
                    let sql =
                        std::fs::read_to_string(root().join("migrations").join(file)).unwrap();
                    conn.execute_batch(&sql).unwrap();
                }
            }
            databases.push((binding, new[0].clone()));
        }

        let in_consumer: Vec<usize> = extra
            .iter()
            .zip(&options.extra_databases)
            .filter(|(_, &bound)| bound)
            .map(|(&k, _)| k)
            .collect();
        let consumer = consumer_config(
            state.path(),
            build,
            options.databases,
            &in_consumer,
            &options.consumer_vars,
            &options.consumer_queue,
            &options.letter_queue,
        );
        let launch = Launch {
            chat,
            consumer,
            persist,
            log: log.clone(),
            options: options.clone(),
        };
        let (child, port) = launch.spawn();
        let mut workers = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            state,
            log,
            databases,
            mapped: options.databases,
        };
        // wrangler picks more ports than the two given (the second Worker's, the dev
        // registry's), and another wrangler starting at the same moment can take one first:
        // workerd then fails at once with "Address already in use". Start again on new ports.
        for attempt in 1..=3 {
            match workers.wait_ready().await {
                Ok(()) => return workers,
                Err(_) if attempt < 3 && workers.log().contains("Address already in use") => {
                    eprintln!("wrangler dev lost a port race (attempt {attempt}); starting again");
                    workers.stop();
                    let (child, port) = launch.spawn();
                    workers.child = child;
                    workers.base = format!("http://127.0.0.1:{port}");
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Stops wrangler dev and its workerd.
    fn stop(&mut self) {
        // wrangler runs workerd as a child: stop the whole process group (its id is the
        // child's pid, from `process_group(0)`). libc, not `kill(1)`: procps' kill has
        // misread negative ids as options here. The leader is reaped only after the last
        // signal: until then its pid, and so the group's id, cannot be given to another
        // process, whose group a late SIGKILL would hit.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid only signals that process group.
        unsafe { libc::kill(-pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // SAFETY: waitid only reads the child's state; WNOWAIT leaves it unreaped.
            let exited = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                ) == 0
                    && info.si_pid() == pid
            };
            if exited {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above; whatever is left of the group is killed, its leader not reaped yet.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Waits until `/healthz` answers; fails at once if wrangler exits, or after 120 s.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "wrangler dev exited ({status}) before answering:\n{}",
                    self.log_tail()
                ));
            }
            if self.log().contains("The Workers runtime failed to start") {
                return Err(format!(
                    "the Workers runtime failed to start:\n{}",
                    self.log_tail()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "wrangler dev did not answer in 120 s:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The last lines wrangler printed, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Everything wrangler printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `/proc` folders and `stat` fields (after the command's name) of the workerd
    /// processes of this `wrangler dev`.
    fn workerd_procs(&self) -> Vec<(PathBuf, Vec<String>)> {
        let group = self.child.id();
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let dir = entry.path();
            let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            let pgrp: Option<u32> = fields.get(2).and_then(|g| g.parse().ok());
            if pgrp == Some(group) && head.contains("workerd") {
                out.push((dir, fields));
            }
        }
        out
    }

    /// Whether this `wrangler dev`'s workerd is still running.
    pub fn running(&self) -> bool {
        !self.workerd_procs().is_empty()
    }

    /// Resident memory of the workerd processes of this `wrangler dev`, in KiB.
    pub fn workerd_rss_kib(&self) -> u64 {
        self.workerd_procs()
            .iter()
            .map(|(dir, _)| {
                std::fs::read_to_string(dir.join("status"))
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|k| k.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// CPU time the workerd processes of this `wrangler dev` have used (user and system,
    /// their threads included), in milliseconds.
    pub fn workerd_cpu_ms(&self) -> f64 {
        // SAFETY: sysconf only reads a constant of the system.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let ticks: u64 = self
            .workerd_procs()
            .iter()
            .map(|(_, f)| {
                // After the name: state is field 0, utime 11, stime 12 (stat(5)'s 14 and 15).
                let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                n(11) + n(12)
            })
            .sum();
        ticks as f64 * 1000.0 / ticks_per_second
    }

    /// The JSON log lines the Workers printed with this `message` (e.g. "turn batch").
    pub fn log_events(&self, message: &str) -> Vec<Value> {
        let needle = format!("\"message\":\"{message}\"");
        self.log()
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.find('{').and_then(|i| serde_json::from_str(&l[i..]).ok()))
            .collect()
    }

    /// A reading connection to every local database at once: the control database
    /// (`DB_0`) with the others attached, and each table a temporary view of the union of
    /// its rows in every database. Queries see the system's whole data, wherever the bucket
    /// map put it. To write, or to see one database, use [`Self::shard`].
    pub fn db(&self) -> Connection {
        let conn = self.shard("DB_0");
        let tables: Vec<String> = {
            let mut st = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name != 'd1_migrations'")
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        for (i, (_, path)) in self.databases.iter().enumerate().take(self.mapped).skip(1) {
            conn.execute(
                &format!("ATTACH DATABASE ?1 AS shard{i}"),
                [path.to_string_lossy()],
            )
            .unwrap();
        }
        for table in tables {
            let mut union = format!("SELECT * FROM main.{table}");
            for i in 1..self.mapped {
                union.push_str(&format!(" UNION ALL SELECT * FROM shard{i}.{table}"));
            }
            conn.execute_batch(&format!("CREATE TEMP VIEW {table} AS {union}"))
                .unwrap();
        }
        conn
    }

    /// A connection to one local database (`DB_0`, `DB_1`), to read or write it alone.
    pub fn shard(&self, binding: &str) -> Connection {
        let (_, path) = self
            .databases
            .iter()
            .find(|(b, _)| *b == binding)
            .unwrap_or_else(|| panic!("no local database {binding}"));
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
    }

    /// Applies to `binding` every migration it lacks, as `wrangler d1 migrations apply`
    /// does: each file with its record in one transaction, so a file that fails changes
    /// nothing and the ones after it are not tried. Returns the first failure, named by its
    /// file. (Done on the database file itself: a second wrangler on the state folder of a
    /// running `wrangler dev` was seen to stop it.)
    pub fn apply_all_migrations(&self, binding: &str) -> Result<Vec<String>, String> {
        let conn = self.shard(binding);
        let mut applied = Vec::new();
        for file in chat_core::native::migration_files(&root().join("migrations")).unwrap() {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let done: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM d1_migrations WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .unwrap();
            if done > 0 {
                continue;
            }
            let tx = conn.unchecked_transaction().unwrap();
            tx.execute_batch(&std::fs::read_to_string(&file).unwrap())
                .and_then(|()| {
                    tx.execute("INSERT INTO d1_migrations (name) VALUES (?1)", [&name])
                        .map(|_| ())
                })
                .map_err(|e| format!("{name}: {e}"))?;
            tx.commit().unwrap();
            applied.push(name);
        }
        Ok(applied)
    }

    /// Applies to `binding` the migrations it lacks (an extra database is created without
    /// the newest), recording them as wrangler does.
    pub fn finish_migrations(&self, binding: &str) {
        if let Err(e) = self.apply_all_migrations(binding) {
            panic!("applying the migrations {binding} lacks: {e}");
        }
    }

    /// How many session actors have storage on disk (one SQLite file each).
    pub fn actor_files(&self) -> usize {
        let dir = self.state.path().join("state/v3/do");
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().contains("SessionActor"))
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .filter(|f| f.path().extension().is_some_and(|x| x == "sqlite"))
            .count()
    }

    /// Every place of the local state (D1 databases, actor storage, the R2 bucket's index:
    /// every SQLite file under the state folder) whose rows name `needle`, as
    /// `file: table (rows)`. A row counts when any of its columns' text contains it.
    pub fn sqlite_rows_naming(&self, needle: &str) -> Vec<String> {
        fn files(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    files(&path, out);
                } else if path.extension().is_some_and(|x| x == "sqlite") {
                    out.push(path);
                }
            }
        }
        let mut paths = Vec::new();
        files(&self.state.path().join("state"), &mut paths);
        let mut found = Vec::new();
        for path in paths {
            let Ok(conn) =
                Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            else {
                continue;
            };
            let tables: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                .unwrap_or_default();
            for table in tables {
                let cols: Vec<String> = conn
                    .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                    .unwrap_or_default();
                if cols.is_empty() {
                    continue;
                }
                let any: Vec<String> = cols
                    .iter()
                    .map(|c| format!("instr(CAST(\"{c}\" AS TEXT), ?1) > 0"))
                    .collect();
                let n: i64 = conn
                    .query_row(
                        &format!(
                            "SELECT COUNT(*) FROM \"{table}\" WHERE {}",
                            any.join(" OR ")
                        ),
                        [needle],
                        |r| r.get(0),
                    )
                    .unwrap_or(0);
                if n > 0 {
                    found.push(format!("{}: {table} ({n})", path.display()));
                }
            }
        }
        found
    }

    /// The local databases' bindings, `DB_0` first.
    pub fn shards(&self) -> Vec<&str> {
        self.databases
            .iter()
            .take(self.mapped)
            .map(|(b, _)| b.as_str())
            .collect()
    }

    /// Bytes the local databases hold (pages in use, WAL included), summed.
    pub fn database_bytes(&self) -> i64 {
        self.shards()
            .into_iter()
            .map(|b| {
                self.shard(b)
                    .query_row(
                        "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                    .unwrap()
            })
            .sum()
    }

    /// One number from the local D1.
    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// How many times the turn `turn_id` is stored (its point event): 1 once it is, never 2.
    pub fn stored_turn(&self, turn_id: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM point_events WHERE message_id = '{turn_id}'"
        ))
    }

    /// How many turns of `session` are stored.
    pub fn stored_in(&self, session: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM point_events WHERE session_id = '{session}'"
        ))
    }

    /// How many turns are stored, in every database.
    pub fn stored_turns(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM point_events")
    }

    /// A `POST /api/chat` as player `user`: its status and JSON body.
    pub async fn chat(
        &self,
        user: &str,
        session: &str,
        message: &str,
        key: Option<&str>,
    ) -> (u16, Value) {
        let (status, _, body) = self.chat_raw(user, session, message, key).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// A `POST /api/chat` whose actor is reset on the way (`[fault:reset]`): whether the
    /// client got no answer. Locally the actor shares the chat Worker's isolate, so the
    /// reset leaves the request hanging rather than answering 503: either way the client
    /// has no answer, and gives up after a few seconds.
    pub async fn chat_unanswered(
        &self,
        user: &str,
        session: &str,
        message: &str,
        key: Option<&str>,
    ) -> bool {
        match self
            .chat_request(user, session, message, key)
            .timeout(Duration::from_secs(4))
            .send()
            .await
        {
            Ok(r) => r.status().is_server_error(),
            Err(_) => true,
        }
    }

    /// A `POST /api/chat` that must be answered 200: its JSON body.
    pub async fn chat_ok(&self, user: &str, session: &str, message: &str) -> Value {
        let (status, body) = self.chat(user, session, message, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A raw `POST /api/chat`: its status, whether it is a key's replay
    /// (`Idempotent-Replayed`), and the body's exact bytes.
    pub async fn chat_raw(
        &self,
        user: &str,
        session: &str,
        message: &str,
        key: Option<&str>,
    ) -> (u16, bool, String) {
        let r = self
            .chat_request(user, session, message, key)
            .send()
            .await
            .expect("answered");
        let status = r.status().as_u16();
        let replayed = r.headers().contains_key("idempotent-replayed");
        (status, replayed, r.text().await.unwrap())
    }

    /// Sends a request as player `user` (`X-Dev-User`) with a JSON body.
    pub async fn post(&self, path: &str, user: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("X-Dev-User", user)
            .json(body)
            .send()
            .await
            .expect("the request is answered");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A `POST /api/chat` of `message` in `session` as player `user`, with an
    /// Idempotency-Key when given; the caller sends it and reads what it needs.
    pub fn chat_request(
        &self,
        user: &str,
        session: &str,
        message: &str,
        key: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let req = self
            .http
            .post(self.url("/api/chat"))
            .header("X-Dev-User", user)
            .json(&serde_json::json!({ "sessionId": session, "message": message }));
        match key {
            Some(key) => req.header("Idempotency-Key", key),
            None => req,
        }
    }

    pub async fn get(&self, path: &str, user: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .header("X-Dev-User", user)
            .send()
            .await
            .expect("answered");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Calls an admin route with the harness's token; `body` is sent as JSON when given.
    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            req = req.json(body);
        }
        let r = req.send().await.expect("answered");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An archive run to its end (`POST /admin/archive` page after page, as `chat-admin
    /// archive run` sends them): every page's answer.
    pub async fn archive_run(
        &self,
        older_than_seconds: i64,
        dry_run: bool,
    ) -> Vec<serde_json::Value> {
        let mut cursor = serde_json::Value::Null;
        let mut pages = Vec::new();
        for _ in 0..1000 {
            let (status, page) = self
                .admin(
                    "POST",
                    "/admin/archive",
                    Some(&serde_json::json!({
                        "olderThanSeconds": older_than_seconds, "cursor": cursor, "dryRun": dry_run
                    })),
                )
                .await;
            assert_eq!(status, 200, "{page}");
            cursor = page["nextCursor"].clone();
            pages.push(page);
            if cursor.is_null() {
                return pages;
            }
        }
        panic!("the archive run never ended");
    }

    /// Starts a session for `user`, returning its id.
    pub async fn session(&self, user: &str, character: &str) -> String {
        let body =
            serde_json::json!({ "characterType": character, "username": "tester", "locale": "en" });
        let (status, body) = self.post("/api/sessions", user, &body).await;
        assert_eq!(status, 201, "{body}");
        body["sessionId"].as_str().expect("a session id").to_owned()
    }
}

/// What `wrangler dev` is started with, kept to start it again.
struct Launch {
    chat: PathBuf,
    consumer: PathBuf,
    persist: PathBuf,
    log: PathBuf,
    options: Options,
}

impl Launch {
    /// Starts `wrangler dev` on a free port; returns it and the port.
    fn spawn(&self) -> (Child, u16) {
        let port = free_port();
        let mut cmd = wrangler();
        // `--local`: the [ai] binding would otherwise make wrangler ask for a Cloudflare login.
        // `--test-scheduled`: `GET /__scheduled` runs the Cron Trigger (the archiver).
        cmd.args(["dev", "--local", "--test-scheduled", "-c"])
            .arg(&self.chat)
            .arg("-c")
            .arg(&self.consumer)
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &free_port().to_string()])
            .args(["--var", &format!("ADMIN_TOKEN:{ADMIN_TOKEN}")])
            .args(["--var", &format!("SESSION_ID_KEY:{SESSION_ID_KEY}")])
            .args(["--var", &format!("ERASURE_KEY:{ERASURE_KEY}")])
            .args([
                "--var",
                &format!("SHARD_MAP:{}", shard_map_of(self.options.databases)),
            ])
            .args(["--show-interactive-dev-session=false", "--persist-to"])
            .arg(&self.persist);
        if self.options.dev_auth {
            cmd.args([
                "--var",
                "AUTH_MODE:dev",
                "--var",
                "ALLOW_DEV_AUTH:local-only",
            ]);
        }
        // The per-player rate limit is off, as in scripts/dev.sh, unless the test sets it.
        if !self
            .options
            .chat_vars
            .iter()
            .any(|(k, _)| *k == "TURN_RATE_LIMIT")
        {
            cmd.args(["--var", "TURN_RATE_LIMIT:off"]);
        }
        for (k, v) in &self.options.chat_vars {
            cmd.args(["--var", &format!("{k}:{v}")]);
        }
        let out = File::create(&self.log).unwrap();
        let child = std::os::unix::process::CommandExt::process_group(&mut cmd, 0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("wrangler dev starts");
        (child, port)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- wrangler dev log (last lines) ---\n{}", self.log_tail());
        }
        // E2E_KEEP_STATE=1 keeps the state folder and the whole log, to read after a failure.
        if std::env::var_os("E2E_KEEP_STATE").is_some() {
            let kept = std::mem::replace(&mut self.state, tempfile::tempdir().unwrap()).keep();
            eprintln!("kept the state folder and log in {}", kept.display());
        }
    }
}

/// Polls `check` every 200 ms until it returns true or `timeout` passes; returns whether it held.
pub async fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
