//! The TypeScript readers' bucket function and map parser (`ts/src/shards.ts`) against the
//! Rust ones (`chat_core::shards`): compiled with the repository's `tsc`, run with node, on
//! 10,000 user ids and on good and bad maps.

use chat_core::ids::user_id;
use chat_core::shards::{bucket, ShardMap, BUCKETS};
use e2e::root;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `ts/src/shards.ts` on `input` (one JSON request per line) and returns its answers.
fn typescript(input: &[Value]) -> Vec<Value> {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(root().join("ts/node_modules/.bin/tsc"))
        .current_dir(root().join("ts"))
        .args(["src/shards.ts", "--outDir"])
        .arg(out.path())
        .args(["--target", "ES2022", "--module", "ES2022", "--skipLibCheck"])
        .args(["--types", "@cloudflare/workers-types"])
        .status()
        .expect("tsc runs (scripts/setup.sh installs it)");
    assert!(status.success(), "tsc failed");
    std::fs::write(out.path().join("package.json"), r#"{"type":"module"}"#).unwrap();
    std::fs::write(
        out.path().join("driver.js"),
        r#"import { bucketOf, parseShardMap } from "./shards.js";
import { createInterface } from "node:readline";
for await (const line of createInterface({ input: process.stdin })) {
  const q = JSON.parse(line);
  let a;
  try {
    a = q.id !== undefined ? { bucket: bucketOf(q.id) } : { map: parseShardMap(q.map) };
  } catch (e) {
    a = { error: String(e.message) };
  }
  console.log(JSON.stringify(a));
}
"#,
    )
    .unwrap();
    let mut child = Command::new("node")
        .arg(out.path().join("driver.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let text: String = input.iter().map(|q| format!("{q}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn typescript_and_rust_agree_on_buckets_and_maps() {
    let ids: Vec<String> = (0..10_000)
        .map(|n| user_id(["x", "privy"][n % 2], &format!("player-{n}")).to_string())
        .collect();
    let maps = [
        "DB_0",
        "0-127=DB_0,128-255=DB_1",
        " 0-63=DB_0, 64-191=DB_2 ,192-255=DB_1",
        "0-9=DB_10,10-255=DB_2",
        "",
        "0-127=DB_0",
        "0-128=DB_0,128-255=DB_1",
        "0-255=db_0",
        "5-1=DB_0",
    ];
    let mut input: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
    input.extend(maps.iter().map(|m| json!({ "map": m })));
    let answers = typescript(&input);
    assert_eq!(answers.len(), input.len());
    for (id, a) in ids.iter().zip(&answers) {
        let rust = bucket(&uuid::Uuid::parse_str(id).unwrap());
        assert_eq!(a["bucket"], json!(rust), "{id}");
    }
    for (spec, a) in maps.iter().zip(&answers[ids.len()..]) {
        match ShardMap::parse(spec) {
            Ok(map) => {
                let rust: Vec<&str> = (0..BUCKETS)
                    .map(|b| map.binding_of_bucket(b as u8))
                    .collect();
                assert_eq!(a["map"], json!(rust), "{spec:?}");
            }
            Err(e) => assert!(
                a["error"].is_string(),
                "{spec:?}: Rust refuses ({e}), TS gave {a}"
            ),
        }
    }
    let used: std::collections::HashSet<&Value> =
        answers[..ids.len()].iter().map(|a| &a["bucket"]).collect();
    assert_eq!(used.len(), BUCKETS, "10,000 ids reach every bucket");
}
