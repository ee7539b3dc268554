//! Which addresses a proxy rule may reach: pure classification of IP addresses, and the
//! site's explicit allowlist of hosts. The origin's proxy resolves a host, refuses it when
//! any address is forbidden (unless the host is allowlisted), and connects only to the
//! addresses it checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True when a proxy must not connect to `ip`: anything that is not a globally routed
/// unicast address (loopback, private, link-local and cloud metadata, CGNAT, unspecified,
/// broadcast, multicast, documentation and benchmarking ranges, unique-local, IPv4-mapped
/// and IPv4-compatible IPv6, and 6to4/NAT64 addresses embedding a forbidden IPv4 address).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    match ip.octets() {
        [0, ..] => true,                        // 0.0.0.0/8 "this network", unspecified
        [10, ..] => true,                       // 10/8 private
        [100, b, ..] if b & 0xc0 == 64 => true, // 100.64/10 carrier-grade NAT
        [127, ..] => true,                      // 127/8 loopback
        [169, 254, ..] => true,                 // 169.254/16 link-local, cloud metadata
        [172, b, ..] if b & 0xf0 == 16 => true, // 172.16/12 private
        [192, 0, 0, _] => true,                 // 192.0.0.0/24 IETF protocol assignments
        [192, 0, 2, _] => true,                 // TEST-NET-1
        [192, 88, 99, _] => true,               // 6to4 relay anycast
        [192, 168, ..] => true,                 // 192.168/16 private
        [198, b, ..] if b & 0xfe == 18 => true, // 198.18/15 benchmarking
        [198, 51, 100, _] => true,              // TEST-NET-2
        [203, 0, 113, _] => true,               // TEST-NET-3
        [a, ..] if a >= 224 => true,            // multicast, reserved 240/4, broadcast
        _ => false,
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // 64:ff9b::/96 well-known NAT64 prefix: as good as the IPv4 address it embeds. Checked
    // first, since the prefix lies outside global unicast.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_forbidden_v4(embedded_v4(s[6], s[7]));
    }
    // Everything outside 2000::/3 (global unicast) is special-purpose: ::/96 (unspecified,
    // loopback, deprecated IPv4-compatible), ::ffff:0:0/96 IPv4-mapped (refused whatever it
    // embeds, since stacks route it as IPv4), ::ffff:0:0:0/96 IPv4-translated, unique-local
    // fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8, discard
    // 100::/64, local-use NAT64 64:ff9b:1::/48 and the unassigned rest.
    if s[0] & 0xe000 != 0x2000 {
        return true;
    }
    match s[0] {
        // 2002::/16 6to4: as good as the IPv4 address it embeds.
        0x2002 => is_forbidden_v4(embedded_v4(s[1], s[2])),
        // 2001::/23 IETF protocol assignments (Teredo, benchmarking, ORCHID, …) and
        // 2001:db8::/32 documentation.
        0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
        // 3fff::/20 documentation.
        0x3fff => s[1] & 0xf000 == 0,
        _ => false,
    }
}

/// Normalizes a host for comparison: lower case, no trailing dot, IPv6 without brackets and
/// IP addresses in canonical form.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim_end_matches('.');
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match unbracketed.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => unbracketed.to_ascii_lowercase(),
    }
}

/// Checks and normalizes an allowlist entry from `skyhost.toml`: a host name or an IP
/// address, without port, scheme or wildcard.
pub fn normalize_allowlist_entry(entry: &str) -> Result<String, String> {
    normalize_host_entry("allowlist", entry)
}

/// Checks and normalizes an entry of the `[proxy]` host list `key` (`allowlist`,
/// `forward_credentials`): a host name or an IP address, without port, scheme or wildcard.
pub fn normalize_host_entry(key: &str, entry: &str) -> Result<String, String> {
    if entry.contains("://") {
        return Err(format!(
            "{key} entry '{entry}' must be a host name or IP address, not a URL"
        ));
    }
    if entry.contains('*') {
        return Err(format!(
            "{key} entry '{entry}': wildcards are not supported; list each host"
        ));
    }
    let normalized = normalize_host(entry);
    if normalized.parse::<IpAddr>().is_ok() {
        return Ok(normalized);
    }
    if normalized.contains(':') {
        return Err(format!("{key} entry '{entry}' must not include a port"));
    }
    if !is_dns_name(&normalized) {
        return Err(format!(
            "{key} entry '{entry}' is not a valid host name or IP address"
        ));
    }
    Ok(normalized)
}

/// True for a syntactically valid DNS host name (already lower-cased).
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// True when `host` (as written in the target URL) is explicitly in the allowlist.
pub fn host_in_allowlist(host: &str, allowlist: &[String]) -> bool {
    let host = normalize_host(host);
    allowlist.iter().any(|entry| normalize_host(entry) == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let cases: &[(&str, bool)] = &[
            // IPv4
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("10.0.0.1", true),
            ("10.255.255.255", true),
            ("100.63.255.255", false),
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("100.128.0.0", false),
            ("127.0.0.1", true),
            ("127.255.0.1", true),
            ("169.254.169.254", true),
            ("169.254.0.1", true),
            ("172.15.255.255", false),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("192.0.0.8", true),
            ("192.0.2.1", true),
            ("192.88.99.1", true),
            ("192.168.1.1", true),
            ("198.18.0.1", true),
            ("198.19.255.255", true),
            ("198.20.0.0", false),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("224.0.0.1", true),
            ("239.255.255.250", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            ("1.1.1.1", false),
            ("8.8.8.8", false),
            ("93.184.216.34", false),
            // IPv6
            ("::", true),
            ("::1", true),
            ("::127.0.0.1", true),
            ("::8.8.8.8", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:8.8.8.8", true),
            ("::ffff:0:8.8.8.8", true),
            ("64:ff9b::10.0.0.1", true),
            ("64:ff9b::169.254.169.254", true),
            ("64:ff9b::8.8.8.8", false),
            ("64:ff9b::0808:0808", false),
            ("64:ff9b:0:0:0:1:808:808", true),
            ("65:ff9b::8.8.8.8", true),
            ("64:ff9c::8.8.8.8", true),
            ("64:ff9b:1::1", true),
            ("100::1", true),
            ("2001::1", true),
            ("2001:1ff:ffff::1", true),
            ("2001:200::1", false),
            ("2001:db7::1", false),
            ("2001:db9::1", false),
            ("2001:db8:ffff::1", true),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
            ("2001:db8::1", true),
            ("2002:0a00:0001::1", true),
            ("2002:a9fe:a9fe::1", true),
            ("2002:0808:0808::1", false),
            ("3fff::1", true),
            ("3fff:fff:ffff::1", true),
            ("3fff:1000::1", false),
            ("3ffe::1", false),
            ("2000::1", false),
            ("1fff:ffff::1", true),
            ("4000::1", true),
            ("c000::1", true),
            ("2606:4700::ffff:0:1", false),
            ("2606:4700::ffff:0:0:1", false),
            ("2606:4700:0:0:ffff::1", false),
            ("2003::1", false),
            ("fc00::1", true),
            ("fd12:3456:789a::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
            ("2606:4700:4700::1111", false),
            ("2a00:1450:4001:81b::200e", false),
        ];
        for (text, forbidden) in cases {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(is_forbidden(ip), *forbidden, "{text}");
        }
    }

    #[test]
    fn allowlist_entries() {
        let ok: &[(&str, &str)] = &[
            ("api.example.com", "api.example.com"),
            ("API.Example.COM.", "api.example.com"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "::1"),
            ("0:0::1", "::1"),
            ("localhost", "localhost"),
            ("a-b.example.com", "a-b.example.com"),
            ("_dmarc.example.com", "_dmarc.example.com"),
            ("api2.example.com", "api2.example.com"),
        ];
        for (entry, normalized) in ok {
            assert_eq!(normalize_allowlist_entry(entry).unwrap(), *normalized);
        }
        let bad: &[(&str, &str)] = &[
            ("https://api.example.com", "allowlist entry 'https://api.example.com' must be a host name or IP address, not a URL"),
            ("*.example.com", "allowlist entry '*.example.com': wildcards are not supported; list each host"),
            ("api.example.com:8080", "allowlist entry 'api.example.com:8080' must not include a port"),
            ("bad host", "allowlist entry 'bad host' is not a valid host name or IP address"),
            ("", "allowlist entry '' is not a valid host name or IP address"),
            ("-x.com", "allowlist entry '-x.com' is not a valid host name or IP address"),
        ];
        for (entry, message) in bad {
            assert_eq!(normalize_allowlist_entry(entry).unwrap_err(), *message);
        }
    }

    #[test]
    fn allowlist_matching() {
        let list = vec![
            "127.0.0.1".to_string(),
            "api.internal".to_string(),
            "::1".to_string(),
        ];
        let cases: &[(&str, bool)] = &[
            ("127.0.0.1", true),
            ("API.internal", true),
            ("api.internal.", true),
            ("[::1]", true),
            ("[0::1]", true),
            ("127.0.0.2", false),
            ("localhost", false),
            ("internal", false),
            ("x.api.internal", false),
        ];
        for (host, expected) in cases {
            assert_eq!(host_in_allowlist(host, &list), *expected, "{host}");
        }
        assert!(!host_in_allowlist("127.0.0.1", &[]));
    }
}
