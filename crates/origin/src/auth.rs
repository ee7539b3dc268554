//! Basic auth of protected paths, with a lockout: after `max_failures` wrong attempts at
//! one site from one client network (an IPv4 address, or an IPv6 /64) with one user name
//! within the window, that network gets 429 with `Retry-After` for that name until the
//! window ends. An attacker elsewhere, or guessing another name, never locks the rightful
//! user out.
//!
//! Each attempt is counted before its password is checked, in one atomic step that also
//! refuses it when the count is full, so a burst of parallel guesses gets no more tries
//! than a sequence. Counters live in the [`Cache`] port: in Redis when the region has it
//! (shared by every instance), else in this process; Redis failing falls back to the
//! process, never to an error.

use sha2::{Digest, Sha256};
use skyhost_meta::cache::{Attempt, Attempts, Cache};
use skyhost_meta::ttl::TtlMap;
use skyhost_meta::{DeploymentId, SiteId};
use skyhost_rules::{AuthOutcome, AuthRule, Offered};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// A verified `Authorization` value is trusted this long without running argon2 again, so
/// a protected page's assets do not each cost a password hash.
const GRANT_TTL: Duration = Duration::from_secs(300);

/// What to do with a request to a protected path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Serve it.
    Granted,
    /// 401 with the challenge.
    Challenge,
    /// 429: locked out for this many more seconds.
    Locked(u64),
}

/// Whether a client is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// It may try.
    Open,
    /// Locked for this many more seconds.
    Locked(u64),
}

/// Failure counters per (site, client network, user name), and recently verified
/// credentials.
pub struct Lockout {
    /// Where the counters live.
    cache: Arc<dyn Cache>,
    max_failures: u32,
    window: Duration,
    /// Salted digests of (deployment, rule, Authorization value) that verified.
    granted: TtlMap<[u8; 32], ()>,
    salt: [u8; 32],
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn locked_for(left: Duration) -> u64 {
    ceil_secs(left).max(1)
}

/// 32 bytes from the OS. A one-off secret needs no seeded generator: `rand`'s thread RNG
/// would probe the CPU's features (a dozen `cpuid` exits in a VM) at init.
fn salt() -> [u8; 32] {
    use rand::TryRngCore;
    let mut s = [0u8; 32];
    match rand::rngs::OsRng.try_fill_bytes(&mut s) {
        Ok(()) => s,
        Err(_) => rand::random(),
    }
}

/// The network a client's failures count against: an IPv4 address as it is, an IPv6
/// address by its /64 (one subscriber's whole prefix, which it can rotate through at
/// will), an IPv4-mapped IPv6 address as the IPv4 address.
pub fn client_network(client: Option<IpAddr>) -> String {
    match client {
        None => "unknown".to_string(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The counter key of (site, client network, user name). The name is digested: it is
/// chosen by the client (so of any length), and may be a mistyped password.
fn counter_key(site: &SiteId, network: &str, user: &str) -> String {
    let digest = Sha256::digest(user.as_bytes());
    let user: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("auth-fail:{site}:{network}:{user}")
}

impl Lockout {
    /// Counters in `cache`: at most `max_failures` in each `window`.
    pub fn new(cache: Arc<dyn Cache>, max_failures: u32, window: Duration) -> Self {
        Lockout {
            cache,
            max_failures: max_failures.max(1),
            window,
            granted: TtlMap::new(10_000),
            salt: salt(),
        }
    }

    /// The grant cache key: salted so memory never holds a plain digest of a password, and
    /// bound to the deployment so a changed password takes effect at once.
    fn grant_key(&self, deployment: &DeploymentId, rule: &AuthRule, header: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        for part in [deployment.as_str(), rule.source(), header] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// Whether the key is locked, and whether any failure is on record (so a success
    /// knows to reset), without counting anything.
    async fn status(&self, key: &str) -> (Gate, bool) {
        // A cache that cannot tell says nothing is on record: the password is checked.
        let Attempts { count, left } = self.cache.attempts(key).await.unwrap_or(Attempts::NONE);
        let gate = if count >= u64::from(self.max_failures) && !left.is_zero() {
            Gate::Locked(locked_for(left))
        } else {
            Gate::Open
        };
        (gate, count > 0)
    }

    /// Takes one attempt from the key's counter, or refuses it when the count is full:
    /// one atomic step, so parallel attempts cannot all pass a check made before any was
    /// counted.
    async fn attempt(&self, key: &str) -> Attempt {
        let max = u64::from(self.max_failures);
        match self.cache.take_attempt(key, max, self.window).await {
            Some(a) => a,
            // A cache that counts nothing (the origin's tiers always count, in memory at
            // least): the password is checked, as a first attempt.
            None => Attempt::Counted {
                count: 1,
                left: self.window,
            },
        }
    }

    /// Forgets the failures counted against a key (after a successful login).
    async fn reset(&self, key: &str) {
        self.cache.reset_attempts(key).await;
    }

    /// Checks a request against a rule of `deployment`: lockout first, then the
    /// credentials (argon2 runs off the async threads; a recent success is remembered).
    pub async fn authorize(
        &self,
        rule: &AuthRule,
        authorization: Option<&str>,
        site: &SiteId,
        deployment: &DeploymentId,
        client: Option<IpAddr>,
    ) -> AuthDecision {
        let offered = Offered::parse(authorization);
        let user = match &offered {
            // Asking for the challenge is no failure.
            Offered::Nothing => return AuthDecision::Challenge,
            // Undecodable credentials count against one name of their own.
            Offered::Malformed => "",
            Offered::Credentials { user, .. } => user.as_str(),
        };
        let network = client_network(client);
        let key = counter_key(site, &network, user);
        let grant = authorization.map(|a| self.grant_key(deployment, rule, a));
        if grant.is_some_and(|k| self.granted.contains(&k)) {
            // Locked even so: during a lockout no guess is answered, a right one included.
            let (gate, failures) = self.status(&key).await;
            if let Gate::Locked(secs) = gate {
                return AuthDecision::Locked(secs);
            }
            if failures {
                self.reset(&key).await;
            }
            return AuthDecision::Granted;
        }
        let (count, left) = match self.attempt(&key).await {
            Attempt::Refused { left } => return AuthDecision::Locked(locked_for(left)),
            Attempt::Counted { count, left } => (count, left),
        };
        let owned_rule = rule.clone();
        let header = authorization.map(str::to_owned);
        let outcome = tokio::task::spawn_blocking(move || owned_rule.verify(header.as_deref()))
            .await
            .unwrap_or(AuthOutcome::Denied { user: None });
        match outcome {
            AuthOutcome::Granted { .. } => {
                if let Some(k) = grant {
                    self.granted.insert(k, (), GRANT_TTL);
                }
                self.reset(&key).await;
                AuthDecision::Granted
            }
            AuthOutcome::Missing => AuthDecision::Challenge,
            AuthOutcome::Denied { .. } => {
                // No user name: an attempted name may be a mistyped password.
                tracing::info!(site = %site, client = %network, rule = rule.source(), "basic auth failed");
                // The last try of the window locks at once.
                if count >= u64::from(self.max_failures) {
                    AuthDecision::Locked(locked_for(left))
                } else {
                    AuthDecision::Challenge
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhost_meta::cache::memory::MemoryCache;

    fn memory() -> Arc<dyn Cache> {
        Arc::new(MemoryCache::new(1 << 20))
    }

    fn key(client: &str, user: &str) -> String {
        counter_key(
            &SiteId::parse("s").unwrap(),
            &client_network(Some(client.parse().unwrap())),
            user,
        )
    }

    #[tokio::test]
    async fn memory_attempts_are_counted_refused_and_expire() {
        let l = Lockout::new(memory(), 3, Duration::from_millis(400));
        let k = key("1.2.3.4", "ann");
        let counted = |a: Attempt| match a {
            Attempt::Counted { count, .. } => Some(count),
            Attempt::Refused { .. } => None,
        };
        assert_eq!(l.status(&k).await, (Gate::Open, false));
        assert_eq!(counted(l.attempt(&k).await), Some(1));
        assert_eq!(counted(l.attempt(&k).await), Some(2));
        assert_eq!(counted(l.attempt(&k).await), Some(3));
        assert_eq!(counted(l.attempt(&k).await), None);
        assert_eq!(l.status(&k).await, (Gate::Locked(1), true));
        // Another network, user or site has its own counter.
        for other in [key("5.6.7.8", "ann"), key("1.2.3.4", "bob")] {
            assert_eq!(l.status(&other).await, (Gate::Open, false));
        }
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(l.status(&k).await, (Gate::Open, false));
        assert_eq!(counted(l.attempt(&k).await), Some(1));
        l.reset(&k).await;
        assert_eq!(counted(l.attempt(&k).await), Some(1));
    }

    #[test]
    fn client_network_table() {
        let cases: &[(Option<&str>, &str)] = &[
            (None, "unknown"),
            (Some("192.0.2.7"), "192.0.2.7"),
            (Some("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64"),
            (Some("2001:db8:1:2::9"), "2001:db8:1:2::/64"),
            (Some("2001:db8:1:3::9"), "2001:db8:1:3::/64"),
            (Some("2001:db8::1"), "2001:db8:0:0::/64"),
            (Some("::1"), "0:0:0:0::/64"),
            (Some("::ffff:192.0.2.7"), "192.0.2.7"),
        ];
        for (ip, want) in cases {
            let ip = ip.map(|s| s.parse().unwrap());
            assert_eq!(client_network(ip), *want, "{ip:?}");
        }
    }

    #[test]
    fn counter_keys_hold_no_user_name() {
        let site = SiteId::parse("s").unwrap();
        let k = counter_key(&site, "192.0.2.7", "hunter2-typed-as-a-name");
        assert!(!k.contains("hunter2"), "{k}");
        let long = counter_key(&site, "192.0.2.7", &"x".repeat(10_000));
        assert_eq!(k.len(), long.len());
        assert_ne!(k, counter_key(&site, "192.0.2.7", "ann"));
    }

    fn rule(users: &str) -> AuthRule {
        let sealed = skyhost_rules::parse_site(skyhost_rules::SiteFiles {
            headers: Some(&format!("/p/*\n  Basic-Auth: {users}\n")),
            ..Default::default()
        })
        .unwrap()
        .seal_with(skyhost_rules::HashParams::new(8, 1, 1, None).unwrap())
        .unwrap();
        sealed.auth[0].clone()
    }

    #[tokio::test]
    async fn remembered_grants_are_bound_to_the_deployment() {
        let l = Lockout::new(memory(), 5, Duration::from_secs(60));
        let site = SiteId::parse("s").unwrap();
        let (d1, d2) = (
            DeploymentId::parse("20260101T000000Z-00000001").unwrap(),
            DeploymentId::parse("20260102T000000Z-00000002").unwrap(),
        );
        let old = rule("ann:old-pw");
        let new = rule("ann:new-pw");
        assert_eq!(old.source(), new.source());
        let header = "Basic YW5uOm9sZC1wdw=="; // ann:old-pw
        for _ in 0..2 {
            assert_eq!(
                l.authorize(&old, Some(header), &site, &d1, None).await,
                AuthDecision::Granted
            );
        }
        // The password changed in the next deployment: the old one no longer opens.
        assert_eq!(
            l.authorize(&new, Some(header), &site, &d2, None).await,
            AuthDecision::Challenge
        );
        assert_eq!(
            l.authorize(&new, None, &site, &d2, None).await,
            AuthDecision::Challenge
        );
    }

    #[tokio::test]
    async fn a_burst_gets_no_more_tries_than_a_sequence() {
        let l = Lockout::new(memory(), 5, Duration::from_secs(60));
        let site = SiteId::parse("s").unwrap();
        let d = DeploymentId::parse("20260101T000000Z-00000001").unwrap();
        let rule = rule("ann:right-pw");
        let wrong = "Basic YW5uOndyb25nLXB3"; // ann:wrong-pw
        let right = "Basic YW5uOnJpZ2h0LXB3"; // ann:right-pw
                                              // Twenty guesses at once, the right one eleventh: every attempt is counted before
                                              // any password is checked, so only the first five are checked at all.
        let burst = (0..20).map(|i| {
            let header = if i == 10 { right } else { wrong };
            l.authorize(&rule, Some(header), &site, &d, None)
        });
        let decisions = futures::future::join_all(burst).await;
        assert_eq!(decisions[10], AuthDecision::Locked(60), "{decisions:?}");
        let challenged = decisions
            .iter()
            .filter(|d| **d == AuthDecision::Challenge)
            .count();
        assert_eq!(challenged, 4, "{decisions:?}");
    }

    #[test]
    fn rounding_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }
}
