//! Load for the end-to-end fault tests: writers that send batches with client ids, what
//! the server acknowledged, the SIEM export of the whole log, and the check that the log
//! holds every acknowledged event once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A small deterministic generator (xorshift64*), so that a failing run can be repeated with
/// the seed it prints.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let seed = std::env::var("TRAIL_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("TRAIL_FAULT_SEED={seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// One batch of events with client ids, `w3-b17-0` ….
pub fn batch(name: &str, n: usize, padding: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "id": format!("{name}-{i}"),
                    "action": "created",
                    "actor": {"id": format!("user-{}", i % 7), "type": "user", "ip": format!("10.0.{}.{}", i % 200, i % 250)},
                    "details": {"padding": "x".repeat(padding)},
                })
            })
            .collect(),
    )
}

/// What the server acknowledged of each client id: its seq and leaf hash.
pub type Acked = HashMap<String, (u64, String)>;

/// Posts a batch: `Ok` with its acknowledged items only on a 2xx, `Err` with the status
/// (0 when the connection failed) otherwise.
pub async fn ingest(url: &str, token: &str, body: &Value) -> Result<Vec<Value>, u16> {
    let r = client()
        .post(format!("{url}/v1/orgs/default/events"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = r.status();
    if !status.is_success() {
        return Err(status.as_u16());
    }
    let v: Value = r.json().await.map_err(|_| 0u16)?;
    assert_eq!(v["rejected"], 0, "{v}");
    Ok(v["items"].as_array().unwrap().clone())
}

pub fn record(acked: &mut Acked, items: &[Value]) {
    for i in items {
        let id = i["id"].as_str().unwrap().to_owned();
        let got = (
            i["seq"].as_u64().unwrap(),
            i["hash"].as_str().unwrap().to_owned(),
        );
        if let Some(before) = acked.insert(id.clone(), got.clone()) {
            assert_eq!(before, got, "{id} acknowledged twice, differently");
        }
    }
}

/// Every event of the org, oldest first, through the SIEM export.
pub async fn export_all(url: &str, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut query = "since=2000-01-01T00:00:00Z".to_owned();
    loop {
        let page: Value = client()
            .get(format!(
                "{url}/v1/orgs/default/audit-logs/export?limit=1000&{query}"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        query = format!("cursor={}", page["cursor"].as_str().unwrap());
        if page["more"] != true {
            return out;
        }
    }
}

/// The log holds every acknowledged event exactly once, with the seq and hash it was
/// acknowledged with; the client ids sent are each there once; seqs have no gap.
pub fn check_log(events: &[Value], acked: &Acked, sent: usize) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "the export skipped or repeated a seq"
    );
    let mut by_id: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["category"] == "app") {
        by_id.entry(e["id"].as_str().unwrap()).or_default().push(e);
    }
    for (id, copies) in &by_id {
        assert_eq!(copies.len(), 1, "{id} is stored {} times", copies.len());
    }
    for (id, (seq, hash)) in acked {
        let e = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("acknowledged {id} was lost"))[0];
        assert_eq!(
            (e["seq"].as_u64().unwrap(), e["hash"].as_str().unwrap()),
            (*seq, hash.as_str()),
            "{id} is stored otherwise than acknowledged"
        );
    }
    assert_eq!(by_id.len(), sent, "events were stored that nobody sent");
}
