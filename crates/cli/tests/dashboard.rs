//! `skyhost dashboard` over local mode, rendered by Debian's Chromium headless: with one
//! region in an outage and another held back (`skyhost local hold`) through a deploy, the
//! page shows the outage on the map with where its visitors go, the held region one
//! revision behind, the deploy with the times of the regions that served it, and traffic
//! charts. The screenshot is kept at `$CARGO_TARGET_DIR/artifacts/dashboard/dashboard.png`.

mod common;

use common::local::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c;
        }
    }
    panic!("Chromium is not installed: tests/harness/with-servers.sh installs Debian's `chromium`");
}

/// Runs headless Chromium on `url` with `extra` flags; its stdout.
fn render(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| skyhost_testkit::repo_path("target"));
    let dir = target.join("artifacts").join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dashboard(state: &Path, port: u16) -> Running {
    let child = Command::new(BIN)
        .args(["--local", state.to_str().unwrap(), "dashboard", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--interval-ms", "300"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the dashboard");
    Running(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_an_outage_a_lagging_region_deploy_times_and_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let site = common::example_site(tmp.path());
    let l = Local::start(tmp.path(), 1).await;
    let d1 = l.deploy(&site).unwrap();
    for i in 0..3 {
        until(Duration::from_secs(10), "the first deployment", || async {
            l.serves(&l.region(i), &d1).await
        })
        .await;
    }
    let port = free_ports();
    let _dash = dashboard(&l.state, port);
    let state_url = format!("http://127.0.0.1:{port}/state.json");
    let state = || async {
        let r = l.http.get(&state_url).send().await.ok()?;
        r.json::<serde_json::Value>().await.ok()
    };
    until(Duration::from_secs(20), "the dashboard", || async {
        state()
            .await
            .is_some_and(|v| v["regions"].as_array().is_some_and(|r| r.len() == 3))
    })
    .await;

    // ap-southeast-1 misses the next deploy; eu-central-1 goes out after serving it.
    l.drill("hold", "ap-southeast-1");
    change(&site, "second");
    let d2 = l.deploy(&site).unwrap();
    for i in 0..2 {
        until(Duration::from_secs(10), "the second deployment", || async {
            l.serves(&l.region(i), &d2).await
        })
        .await;
    }
    // Traffic for the charts, to every region, through the edge and directly.
    for _ in 0..20 {
        for r in REGIONS {
            let _ = l.get(&l.edge(), Some(r)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    l.drill("outage", "eu-central-1");
    let view = until(
        Duration::from_secs(20),
        "the outage and the lag in the view",
        || async {
            state().await.is_some_and(|v| {
                let health = |i: usize| v["regions"][i]["health"].as_str().map(str::to_owned);
                let site = &v["sites"][0]["regions"];
                health(1).as_deref() == Some("outage")
                    && site[2]["behind"] == 1
                    && v["deploys"][0]["deployment"] == d2.as_str()
                    && v["deploys"][0]["reached_ms"]["us-west-2"].is_number()
                    && v["regions"][0]["series"]
                        .as_array()
                        .is_some_and(|s| s.len() >= 2)
            })
        },
    )
    .await;
    println!("the dashboard showed the state after {view:?}");

    let dom = render(
        &format!("http://127.0.0.1:{port}/"),
        &["--dump-dom", "--virtual-time-budget=3000"],
    );
    for want in [
        // The map: the outage, its colour's class, and where its visitors go.
        r#"data-region="eu-central-1" data-health="outage""#,
        "eu-central-1 (outage: visitors to us-west-2)",
        r#"class="diverted" data-from="eu-central-1" data-to="us-west-2""#,
        r#"data-region="us-west-2" data-health="healthy""#,
        // The regions table.
        r#"<td class="outage">outage</td><td>go to us-west-2</td>"#,
        // The site: live deployment, the held region one behind.
        &format!("demo: live {d2}"),
        r#"<td class="behind">1 behind</td>"#,
        // The deploy with per-region times.
        &format!(r#"<tr data-deployment="{d2}">"#),
        // Traffic charts.
        "requests/s <b>",
        "cache hits <b>",
        "fallback/s <b>",
        "5xx/s <b>",
    ] {
        assert!(
            dom.contains(want),
            "{want:?} not in the rendered page:\n{dom}"
        );
    }
    // The deploy reached us-west-2 (and eu-central-1, before its outage) in a time, not
    // "not yet"; the held region is still waiting.
    let row = dom
        .split(&format!(r#"<tr data-deployment="{d2}">"#))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap();
    let cells: Vec<&str> = row
        .split("<td>")
        .skip(3)
        .map(|c| c.trim_end_matches("</td>"))
        .collect();
    assert_eq!(cells.len(), 3, "{row}");
    assert!(
        cells[0].ends_with(" ms") || cells[0].ends_with(" s"),
        "{row}"
    );
    assert!(
        cells[1].ends_with(" ms") || cells[1].ends_with(" s"),
        "{row}"
    );
    assert_eq!(cells[2], "not yet", "{row}");

    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    render(
        &format!("http://127.0.0.1:{port}/"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1250",
            "--virtual-time-budget=3000",
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a screenshot of {} bytes is blank",
        png.len()
    );
    println!("screenshot: {}", shot.display());

    l.drill("restore", "eu-central-1");
    l.drill("release", "ap-southeast-1");
    // Released, the held region catches up, and the page says so.
    until(
        Duration::from_secs(20),
        "the held region to catch up",
        || async {
            state()
                .await
                .is_some_and(|v| v["sites"][0]["regions"][2]["behind"] == 0)
        },
    )
    .await;
}
