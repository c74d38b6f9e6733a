//! A real browser for the page tests: Debian's headless Chromium driven over WebDriver
//! (`chromedriver`, from the `chromium-driver` package) with `fantoccini`.
//!
//! [`Browser::start`] runs its own `chromedriver` on a free port with a fresh profile, and
//! stops it (and the browser it started) when dropped. The helpers poll the page through
//! JavaScript, because the pages update after their own fetches.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One headless Chromium, with the WebDriver session that drives it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser whose preferred language is `lang` (`en-US`, `ja`, …).
    pub async fn start(lang: &str) -> Self {
        for tool in ["chromium", "chromedriver"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing: run scripts/setup.sh (it installs Debian's chromium and chromium-driver)"
            );
        }
        let port = crate::free_port();
        let driver = std::os::unix::process::CommandExt::process_group(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .expect("chromedriver starts");
        let profile = tempfile::Builder::new()
            .prefix("chat-browser-")
            .tempdir()
            .unwrap();
        // As root, Chromium needs --no-sandbox. The background-networking switches keep it from
        // calling Google's services, which this machine cannot reach.
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,1000".into(),
            format!("--lang={lang}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
                "prefs": { "intl": { "accept_languages": lang } },
            },
            // Dialogs (the console's confirmations) stay open until the test answers them.
            "unhandledPromptBehavior": "ignore",
        });
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps.as_object().unwrap().clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// The value of a JavaScript expression in the page.
    pub async fn js(&self, expr: &str) -> Value {
        self.client
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
    }

    /// Polls `expr` until it is true, or panics with `what` and the page's text.
    pub async fn wait(&self, what: &str, expr: &str) {
        self.wait_for(what, expr, Duration::from_secs(30)).await
    }

    pub async fn wait_for(&self, what: &str, expr: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.js(expr).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self.js("document.body.innerText").await;
                panic!("timed out waiting for {what} ({expr}); the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css` ("" when none).
    pub async fn text(&self, css: &str) -> String {
        let css = serde_json::to_string(css).unwrap();
        self.js(&format!("document.querySelector({css})?.textContent ?? ''"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Clicks the element matching `css`, as a person would.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Types `text` into the element matching `css` (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Picks the option with value `value` of the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("selecting {value} in {css}: {e}"));
    }

    /// Saves a PNG of the window to `$SCREENSHOTS_DIR/<name>.png` when that variable is set
    /// (`scripts/screenshots.sh` sets it; ordinary test runs write nothing).
    pub async fn screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("SCREENSHOTS_DIR") {
            // The whole page, not only the window: grow the window to the page's height.
            let height = self.js("document.documentElement.scrollHeight").await;
            let height = height.as_u64().unwrap_or(1000).clamp(600, 2400) as u32;
            self.js("(window.scrollTo(0, 0), true)").await;
            self.client
                .set_window_size(1280, height + 120)
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let png = self.client.screenshot().await.expect("a screenshot");
            self.client.set_window_size(1280, 1000).await.unwrap();
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group, with the browser in it.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
