//! The admin console (`GET /admin`) in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, started here on a free port). Signs in with a learner's token (the "admins
//! only" screen) and an admin's, watches the catalog namespace's hits move, invalidates
//! `catalog:*`, publishes a draft, resets the database statistics and looks at the page on a
//! phone-sized window. Saves a screenshot of each screen to docs/console/ (overwritten each run).
//!
//! Needs `chromedriver` and Chromium (Debian: `chromium chromium-driver`; `.ci/run` installs
//! them). `CHROMEDRIVER` and `CHROME_BIN` override where they are. `LEARNHUB_BROWSER=firefox`
//! runs the same steps in headless Firefox through `geckodriver` (`GECKODRIVER`, `FIREFOX_BIN`;
//! Debian's `firefox-esr`, geckodriver from `cargo install geckodriver`), its screenshots in
//! docs/console/firefox/.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use learnhub_db::Backend;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Platform, all_pages, error_of, spawn_platform};

/// How long any one thing on the page may take to appear (the page polls stats every second).
const WAIT: Duration = Duration::from_secs(10);
/// The budget for the page and every file it loads.
const PAGE_BUDGET: usize = 150 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_in_a_browser() {
    let platform = spawn_platform(Backend::Sqlite).await;
    let draft = platform.draft_course("console-e2e-draft").await;
    let admin = platform.admin_user("console-admin@example.com").await.token;
    let learner = platform.learner("console-learner@example.com").await.token;

    let browser = Browser::start().await;
    let page = format!("{}/admin", platform.url);
    browser.goto(&page).await;

    // A learner's token: the "admins only" screen, never the console.
    browser.sign_in(&learner).await;
    let refusal = browser.wait_displayed("#admins-only").await;
    let text = refusal.text().await.unwrap_or_default();
    assert!(
        text.contains("Admins only"),
        "#admins-only is shown but says {text:?}"
    );
    assert!(
        !browser.displayed("#console").await,
        "#console is displayed for a learner's token"
    );
    browser.screenshot("admins-only", None).await;
    browser.click("#admins-only-back").await;
    browser.wait_displayed("#sign-in-form").await;

    // An admin's token, by keyboard alone (Tab from the token to the button, Enter on it): the
    // console, the token in this tab's sessionStorage only.
    browser.sign_in_by_keyboard(&admin).await;
    browser.wait_displayed("#console").await;
    assert!(
        !browser.displayed("#admins-only").await,
        "#admins-only is displayed for an admin's token"
    );
    let stored = browser
        .script(
            "const t = arguments[0]; const has = s => Object.keys(s).some(k => (s.getItem(k) || '').includes(t)); \
             return [has(sessionStorage), has(localStorage), document.cookie.includes(t)];",
            vec![json!(admin)],
        )
        .await;
    assert_eq!(
        stored,
        json!([true, false, false]),
        "the token in [sessionStorage, localStorage, a cookie]"
    );

    // Cache: the catalog namespace's L1 hits move after a miss and a hit on the public catalog.
    browser
        .wait_for("#cache-hits", "show an integer", |t| {
            parse_count(t).is_some()
        })
        .await;
    let store = browser.text("#cache-store").await.unwrap_or_default();
    assert!(
        !store.is_empty() && store != "–",
        "#cache-store shows {store:?}"
    );
    // The second read of a page is answered by the gateway's near-cache (L1), so its hits move.
    platform.near_cache_live().await;
    let catalog_hits = r#"#near tr[data-namespace="catalog"] [data-field="hits"]"#;
    let before = browser
        .text(catalog_hits)
        .await
        .and_then(|t| parse_count(&t));
    for _ in 0..2 {
        platform.get_json("/v1/catalog").await;
    }
    let hits = browser
        .wait_for(
            catalog_hits,
            &format!("show more hits than before ({before:?})"),
            |t| parse_count(t).is_some_and(|n| n > before.unwrap_or(0)),
        )
        .await;
    let misses = browser
        .wait_for(
            r#"#namespaces tr[data-namespace="catalog"] [data-field="misses"]"#,
            "show at least one miss",
            |t| parse_count(t).is_some_and(|n| n >= 1),
        )
        .await;
    println!("catalog namespace: hits {before:?} -> {hits}, misses {misses}");
    browser.wait_displayed("#cache-chart").await;
    browser.screenshot("cache", Some("#namespaces")).await;

    // Invalidate catalog:* (confirmed): the removed count is a number of at least one.
    browser.type_into("#pattern", "catalog:*").await;
    browser.click("#invalidate").await;
    let confirm = browser.wait_displayed("#confirm").await;
    let asked = confirm.text().await.unwrap_or_default();
    assert!(
        asked.contains("catalog:*"),
        "#confirm does not name the pattern: {asked:?}"
    );
    browser.click("#confirm-yes").await;
    browser
        .wait_for("#invalidate-result", "say what was removed", |t| {
            !t.is_empty()
        })
        .await;
    let removed = browser
        .wait_for("#invalidate-removed", "hold a count of at least 1", |t| {
            parse_count(t).is_some_and(|n| n >= 1)
        })
        .await;
    println!("invalidate catalog:* removed {removed}");
    assert!(
        !browser.displayed("#confirm").await,
        "#confirm is still displayed after #confirm-yes"
    );

    // A bare `*`: the API's refusal, word for word, and no count.
    let (status, code, refusal) = error_of(
        platform
            .post("/v1/admin/cache/invalidate")
            .bearer_auth(&admin)
            .json(&json!({"pattern": "*"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_argument")
    );
    let shown_before = browser.text("#invalidate-result").await.unwrap_or_default();
    browser.type_into("#pattern", "*").await;
    browser.click("#invalidate").await;
    browser
        .confirm_if_asked("#invalidate-result", &shown_before)
        .await;
    let shown = browser
        .wait_for(
            "#invalidate-result",
            &format!("show the API's refusal {refusal:?}"),
            |t| t.contains(refusal.as_str()),
        )
        .await;
    if browser.displayed("#invalidate-removed").await {
        let count = browser
            .text("#invalidate-removed")
            .await
            .unwrap_or_default();
        assert!(
            parse_count(&count).is_none(),
            "a refused `*` still shows a removed count {count:?} (result {shown:?})"
        );
    }
    browser
        .screenshot("invalidate", Some("#invalidate-result"))
        .await;

    // Drafts: publish the draft from its row; the public catalog then has it.
    let row = format!(r#"#drafts tr[data-course-id="{draft}"]"#);
    browser.wait_displayed(&row).await;
    let shown_before = browser.text("#course-result").await.unwrap_or_default();
    browser
        .click(&format!(r#"{row} button[data-action="publish"]"#))
        .await;
    browser
        .confirm_if_asked("#course-result", &shown_before)
        .await;
    let said = browser
        .wait_for("#course-result", "say the course was published", |t| {
            !t.is_empty() && t != shown_before
        })
        .await;
    println!("publish: {said:?}");
    let course = wait_published(&platform, draft).await;
    assert_eq!(course["course"]["id"], draft, "{course}");
    let (listed, _) = all_pages(&platform, "page_size=100").await;
    assert!(
        listed.iter().any(|c| c["id"] == draft),
        "the published course {draft} is not on the public catalog"
    );
    browser.screenshot("drafts", Some("#drafts")).await;

    // Database: the catalog's statements, then a reset.
    let statements = r#"#db section[data-service="catalog"] table.statements tbody tr"#;
    let rows = browser.wait_count(statements, 1).await;
    println!("catalog statements listed: {rows}");
    assert!(
        browser
            .exists(r#"#db section[data-service="enrollment"] table.statements"#)
            .await,
        "#db has no enrollment section with table.statements"
    );
    let shown_before = browser.text("#db-result").await.unwrap_or_default();
    browser.click("#db-reset").await;
    browser.confirm_if_asked("#db-result", &shown_before).await;
    let said = browser
        .wait_for("#db-result", "say the statistics were reset", |t| {
            !t.is_empty() && t != shown_before
        })
        .await;
    println!("db reset: {said:?}");
    browser.screenshot("database", Some("#db")).await;

    // A phone-sized window: still signed in after a reload, and nothing wider than the screen.
    browser.set_window_size(390, 844).await;
    browser.refresh().await;
    browser.wait_displayed("#console").await;
    browser
        .wait_for("#cache-hits", "show an integer after the reload", |t| {
            parse_count(t).is_some()
        })
        .await;
    browser.screenshot("narrow", None).await;
    let widths = browser
        .script(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await;
    let (scroll, inner) = (
        widths[0].as_f64().unwrap_or(f64::MAX),
        widths[1].as_f64().unwrap_or(0.0),
    );
    assert!(
        scroll <= inner + 1.0,
        "the page overflows a 390 px window: scrollWidth {scroll} > innerWidth {inner}"
    );

    browser.close().await;

    // The page itself, without a browser: its policy and its weight.
    page_headers_and_weight(&platform).await;
}

/// `GET /admin`: a strict Content-Security-Policy, and the page plus every file it names under
/// /admin/assets/ within [`PAGE_BUDGET`].
async fn page_headers_and_weight(platform: &Platform) {
    let response = platform.get("/admin").send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "GET /admin: is the console served?"
    );
    let policy = response
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("GET /admin has no Content-Security-Policy"));
    assert!(
        !policy.contains("'unsafe-inline'"),
        "the policy allows inline code: {policy}"
    );
    assert!(
        policy
            .split(';')
            .any(|directive| directive.trim() == "script-src 'self'"),
        "the policy has no `script-src 'self'`: {policy}"
    );
    let index = response.text().await.unwrap();
    let mut total = index.len();
    let mut assets: Vec<String> = Vec::new();
    for attribute in ["src=\"", "href=\"", "src='", "href='"] {
        let quote = attribute.chars().last().unwrap();
        for rest in index.split(attribute).skip(1) {
            let value = rest.split(quote).next().unwrap_or_default();
            if value.starts_with("/admin/assets/") && !assets.iter().any(|a| a == value) {
                assets.push(value.to_owned());
            }
        }
    }
    assert!(
        !assets.is_empty(),
        "index.html names no /admin/assets/ file"
    );
    for asset in &assets {
        let response = platform.get(asset).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {asset}");
        total += response.bytes().await.unwrap().len();
    }
    println!(
        "console page weight: {total} bytes (index.html and {} files: {assets:?})",
        assets.len()
    );
    assert!(
        total < PAGE_BUDGET,
        "the console weighs {total} bytes, over {PAGE_BUDGET}"
    );
}

/// `GET /v1/courses/{id}` (public) until it answers with the course published.
async fn wait_published(platform: &Platform, id: i64) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let response = platform
            .get(&format!("/v1/courses/{id}"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let published = body["course"]["status"]
            .as_str()
            .is_none_or(|s| s == "published");
        if status == StatusCode::OK && published {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "course {id} not public and published after clicking publish: \
             GET /v1/courses/{id} -> {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A plain integer count (`12`), nothing else.
fn parse_count(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Which browser the test drives: Chromium unless `LEARNHUB_BROWSER=firefox`.
fn firefox() -> bool {
    std::env::var("LEARNHUB_BROWSER").is_ok_and(|browser| browser == "firefox")
}

/// chromedriver (or geckodriver) on a free loopback port, in a process group of its own (with
/// the browsers it starts): dropping it kills the group.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    async fn start() -> Self {
        use std::os::unix::process::CommandExt;
        let binary = if firefox() {
            std::env::var("GECKODRIVER").unwrap_or_else(|_| "geckodriver".into())
        } else {
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start {binary} ({err}): install chromium and chromium-driver")
            });
        let mut driver = ChromeDriver { child, port };
        let status = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!("{binary} --port={port} exited at start: {exit}");
            }
            if let Ok(response) = http.get(&status).send().await
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "{binary} not ready on port {port} after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // First politely (`/shutdown` quits its browsers, which reap their own children), so no
        // process is left for init to reap; then the whole group, whatever is left of it.
        use std::io::Write;
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = write!(
                stream,
                "GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.port
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session, with waits that fail naming the selector and what was seen.
struct Browser {
    client: Client,
    // After `client`: the session goes before the driver is killed.
    _driver: ChromeDriver,
}

impl Browser {
    async fn start() -> Self {
        let driver = ChromeDriver::start().await;
        let capabilities = if firefox() {
            Self::firefox_capabilities()
        } else {
            Self::chromium_capabilities()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|err| panic!("no headless browser session: {err}"));
        if firefox() {
            // Firefox takes no window size flag that sets the viewport: set the window.
            client.set_window_size(1280, 800).await.unwrap();
        }
        Browser {
            client,
            _driver: driver,
        }
    }

    fn firefox_capabilities() -> serde_json::Map<String, Value> {
        let mut options = json!({ "args": ["-headless"] });
        let binary = std::env::var("FIREFOX_BIN").ok().or_else(|| {
            Path::new("/usr/bin/firefox-esr")
                .exists()
                .then(|| "/usr/bin/firefox-esr".to_owned())
        });
        if let Some(binary) = binary {
            options["binary"] = json!(binary);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("firefox"));
        capabilities.insert("moz:firefoxOptions".into(), options);
        capabilities
    }

    fn chromium_capabilities() -> serde_json::Map<String, Value> {
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,800",
                "--disable-crash-reporter",
                "--disable-breakpad",
            ],
        });
        let chrome = std::env::var("CHROME_BIN").ok().or_else(|| {
            Path::new("/usr/bin/chromium")
                .exists()
                .then(|| "/usr/bin/chromium".to_owned())
        });
        if let Some(chrome) = chrome {
            options["binary"] = json!(chrome);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), options);
        capabilities
    }

    async fn close(self) {
        let Browser { client, _driver } = self;
        client.close().await.unwrap();
    }

    async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|err| panic!("open {url}: {err}"));
    }

    async fn refresh(&self) {
        self.client.refresh().await.unwrap();
    }

    async fn set_window_size(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    async fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|err| panic!("script {script:?}: {err}"))
    }

    async fn find(&self, css: &str) -> Option<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .ok()?
            .into_iter()
            .next()
    }

    async fn exists(&self, css: &str) -> bool {
        self.find(css).await.is_some()
    }

    async fn displayed(&self, css: &str) -> bool {
        match self.find(css).await {
            Some(element) => element.is_displayed().await.unwrap_or(false),
            None => false,
        }
    }

    /// The element's textContent, trimmed; None when nothing matches.
    async fn text(&self, css: &str) -> Option<String> {
        let element = self.find(css).await?;
        let text = element.prop("textContent").await.ok()??;
        Some(text.trim().to_owned())
    }

    /// Polls `css`'s text until `ready` holds; the text then. Fails after [`WAIT`] naming the
    /// selector, what it waited for and the last text seen.
    async fn wait_for(&self, css: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = self.text(css).await;
            if let Some(text) = &seen
                && ready(text)
            {
                return text.clone();
            }
            if Instant::now() >= deadline {
                let seen = match seen {
                    Some(text) => format!("its text was {text:?}"),
                    None => "no element matched".to_owned(),
                };
                panic!("waited {WAIT:?} for `{css}` to {what}: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_displayed(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.find(css).await;
            if let Some(element) = &found
                && element.is_displayed().await.unwrap_or(false)
            {
                return element.clone();
            }
            if Instant::now() >= deadline {
                let seen = match found {
                    Some(_) => "it exists but is not displayed",
                    None => "no element matched",
                };
                panic!("waited {WAIT:?} for `{css}` to be displayed: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for at least `min` elements matching `css`; how many there are.
    async fn wait_count(&self, css: &str, min: usize) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let count = self
                .client
                .find_all(Locator::Css(css))
                .await
                .map(|all| all.len())
                .unwrap_or(0);
            if count >= min {
                return count;
            }
            assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for at least {min} `{css}`: found {count}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let element = self.wait_displayed(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|err| panic!("click `{css}`: {err}"));
    }

    /// Replaces the field's value with `text`, typed.
    async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_displayed(css).await;
        element
            .clear()
            .await
            .unwrap_or_else(|err| panic!("clear `{css}`: {err}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|err| panic!("type into `{css}`: {err}"));
    }

    /// Types `token`, then Tab to the sign-in button (it must be the next stop and hold the
    /// focus) and Enter on it: no pointer.
    async fn sign_in_by_keyboard(&self, token: &str) {
        self.wait_displayed("#sign-in-form").await;
        self.type_into("textarea#token", token).await;
        let token_box = self.wait_displayed("textarea#token").await;
        token_box
            .send_keys(&fantoccini::key::Key::Tab.to_string())
            .await
            .unwrap_or_else(|err| panic!("Tab from the token box: {err}"));
        let focused = self
            .script(
                "return document.activeElement && document.activeElement.id;",
                vec![],
            )
            .await;
        assert_eq!(
            focused,
            json!("sign-in"),
            "Tab from the token box lands on the sign-in button"
        );
        let button = self.wait_displayed("button#sign-in").await;
        button
            .send_keys(&fantoccini::key::Key::Enter.to_string())
            .await
            .unwrap_or_else(|err| panic!("Enter on the sign-in button: {err}"));
    }

    async fn sign_in(&self, token: &str) {
        self.wait_displayed("#sign-in-form").await;
        self.type_into("textarea#token", token).await;
        self.click("button#sign-in").await;
    }

    /// After an action that may ask first: says yes if `#confirm` shows before `result`'s text
    /// moves from `before`.
    async fn confirm_if_asked(&self, result: &str, before: &str) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.displayed("#confirm").await {
                self.click("#confirm-yes").await;
                return;
            }
            if self
                .text(result)
                .await
                .is_some_and(|text| !text.is_empty() && text != before)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// docs/console/{name}.png, overwritten: the window with `focus` in its middle (the top of
    /// the page without one).
    async fn screenshot(&self, name: &str, focus: Option<&str>) {
        self.script(
            "const el = arguments[0] && document.querySelector(arguments[0]); \
             if (el) el.scrollIntoView({block: 'center'}); else window.scrollTo(0, 0);",
            vec![json!(focus)],
        )
        .await;
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|err| panic!("screenshot {name}: {err}"));
        let mut folder: PathBuf = [env!("CARGO_MANIFEST_DIR"), "docs", "console"]
            .iter()
            .collect();
        if firefox() {
            folder.push("firefox");
        }
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    }
}
