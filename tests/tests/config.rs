//! The deployable configs say what the code relies on.

use e2e::root;
use toml_edit::DocumentMut;

fn config(path: &str) -> DocumentMut {
    std::fs::read_to_string(root().join(path))
        .unwrap()
        .parse()
        .unwrap()
}

fn consumer_of<'a>(doc: &'a DocumentMut, queue: &str) -> &'a toml_edit::Table {
    doc["queues"]["consumers"]
        .as_array_of_tables()
        .unwrap()
        .iter()
        .find(|c| c["queue"].as_str() == Some(queue))
        .unwrap_or_else(|| panic!("a consumer of {queue}"))
}

#[test]
fn the_consumer_knows_the_turn_queue_retry_limit() {
    let doc = config("consumer/wrangler.toml");
    let turns = consumer_of(&doc, "chat-turns");
    let max_retries = turns["max_retries"].as_integer().unwrap();
    let var: i64 = doc["vars"]["TURN_MAX_RETRIES"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(var, max_retries, "TURN_MAX_RETRIES must equal max_retries");
    for key in [
        "max_batch_size",
        "max_batch_timeout",
        "max_retries",
        "dead_letter_queue",
    ] {
        assert!(turns.contains_key(key), "{key} is set explicitly");
    }
    assert_eq!(turns["max_batch_size"].as_integer(), Some(100));
    assert_eq!(turns["dead_letter_queue"].as_str(), Some("chat-turns-dlq"));
    let letters = consumer_of(&doc, "chat-turns-dlq");
    assert!(
        letters["max_retries"].as_integer().unwrap() >= 50,
        "letters are retried generously"
    );
    let letter_var: i64 = doc["vars"]["LETTER_MAX_RETRIES"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        Some(letter_var),
        letters["max_retries"].as_integer(),
        "LETTER_MAX_RETRIES must equal the dead-letter queue's max_retries, or a letter's last delivery is missed"
    );
}

#[test]
fn deployable_configs_never_enable_local_only_switches() {
    let chat = config("wrangler.toml");
    assert_ne!(chat["vars"]["AUTH_MODE"].as_str(), Some("dev"));
    assert!(
        chat["vars"].get("ADMIN_TOKEN").is_none(),
        "the admin token is a secret, not a var"
    );
    let consumer = config("consumer/wrangler.toml");
    assert!(
        consumer["vars"].get("FAULTS").is_none(),
        "fault injection is local only"
    );
}

/// `wrangler deploy --dry-run` bundles a Worker as a deploy would, without an account;
/// returns every file of the bundle, concatenated.
fn deploy_dry_run(config: &str) -> Vec<u8> {
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(root().join("node_modules/.bin/wrangler"))
        .current_dir(root())
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .args(["deploy", "--dry-run", "-c", config, "--outdir"])
        .arg(out.path())
        .output()
        .expect("wrangler runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "wrangler deploy --dry-run -c {config} failed:\n{text}"
    );
    assert!(text.contains("--dry-run: exiting now."), "{text}");
    let mut bundle = Vec::new();
    for file in std::fs::read_dir(out.path()).unwrap() {
        bundle.extend(std::fs::read(file.unwrap().path()).unwrap());
    }
    assert!(bundle.len() > 100_000, "the bundle holds the wasm");
    bundle
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Strings only the test switches use: the development auth header and its refusal hint,
/// and the consumer's fault markers and banner.
const CHAT_SWITCHES: [&str; 2] = ["X-Dev-User", "ALLOW_DEV_AUTH"];
const CONSUMER_SWITCHES: [&str; 3] = ["[fault:", "fault injection is ON", "letters-until"];

#[test]
fn both_workers_pass_a_deploy_dry_run_with_the_deployable_build() {
    let chat = deploy_dry_run("wrangler.toml");
    let consumer = deploy_dry_run("consumer/wrangler.toml");
    for (worker, bundle, switches) in [
        ("producer", &chat, &CHAT_SWITCHES[..]),
        ("consumer", &consumer, &CONSUMER_SWITCHES[..]),
    ] {
        // The local build has them, so this search can find them.
        let local = std::fs::read(root().join(worker).join("build-local/index_bg.wasm"))
            .expect("scripts/build.sh builds build-local/");
        for s in switches {
            assert!(holds(&local, s), "the local {worker} build has {s:?}");
            assert!(
                !holds(bundle, s),
                "the deployable {worker} bundle has {s:?}"
            );
        }
    }
}

#[test]
fn both_workers_bind_the_same_databases_and_bucket_map() {
    let chat = config("wrangler.toml");
    let consumer = config("consumer/wrangler.toml");
    let dbs = |c: &DocumentMut| -> Vec<(String, String)> {
        c["d1_databases"]
            .as_array_of_tables()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["binding"].as_str().unwrap().to_owned(),
                    d["database_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(dbs(&chat), dbs(&consumer));
    assert_eq!(dbs(&chat)[0].0, chat_core::shards::CONTROL);
    assert_eq!(
        chat["vars"]["SHARD_MAP"].as_str(),
        consumer["vars"]["SHARD_MAP"].as_str()
    );
    let map = chat_core::shards::ShardMap::parse(chat["vars"]["SHARD_MAP"].as_str().unwrap())
        .expect("SHARD_MAP parses");
    let bound: Vec<String> = dbs(&chat).into_iter().map(|(b, _)| b).collect();
    for b in map.bindings() {
        assert!(bound.iter().any(|x| x == b), "{b} is bound");
    }
    assert_eq!(
        map.bindings(),
        vec!["DB_0"],
        "the deploy default is one database"
    );
}

#[test]
fn the_production_config_names_every_setting_the_code_reads() {
    let chat = config("wrangler.toml");
    let text = std::fs::read_to_string(root().join("wrangler.toml")).unwrap();
    // Every variable the chat Worker reads is named in its config module (and Privy's in
    // worker-support); each must be in wrangler.toml, as a var or a listed secret, but the
    // local build's switches, which the deployable config must never set.
    let mut names: Vec<String> = Vec::new();
    for file in ["producer/src/config.rs", "support/src/privy_auth.rs"] {
        let code = std::fs::read_to_string(root().join(file)).unwrap();
        for call in ["var(\"", "set(\"", "number(\""] {
            for part in code.split(call).skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if name.len() > 2 && part[name.len()..].starts_with('"') {
                    names.push(name);
                }
            }
        }
    }
    assert!(
        names.len() >= 20,
        "the config module names its variables: {names:?}"
    );
    for name in &names {
        let local_only = ["ALLOW_DEV_AUTH", "FAULTS"].contains(&name.as_str());
        let named = chat["vars"].get(name).is_some() || text.contains(&format!("#   {name}"));
        assert_eq!(
            named, !local_only,
            "{name}: every setting is in wrangler.toml, and no local-only switch is"
        );
    }
    assert_eq!(
        chat["vars"]["AUTH_MODE"].as_str(),
        Some("privy"),
        "production signs players in with Privy"
    );
    assert_eq!(chat["vars"]["REPLY_ENGINE"].as_str(), Some("offline"));
    for secret in [
        "ADMIN_TOKEN",
        "SESSION_ID_KEY",
        "PRIVY_VERIFICATION_KEY",
        "LLM_API_KEY",
    ] {
        assert!(
            text.contains(&format!("#   {secret}")),
            "{secret} is listed as a secret"
        );
    }
}
