//! Veneur's `metric_sink_routing` (SPEC 9): each rule has `match` entries (OR'ed; in
//! one entry the name matcher and every tag matcher must hold) and `sinks.matched` /
//! `sinks.not_matched`. A metric goes to the union, over all rules, of the matched
//! sinks of the rules it matches and the not_matched sinks of the others. Name
//! matchers are `any`, `exact`, `prefix` or `regex` (unanchored, as Go's
//! `MatchString`); tag matchers `exact`, `prefix` or `regex` on the whole `key:value`
//! tag, and with `unset: true` no tag may match. Events and forwarded state are not
//! routed.

use regex::Regex;
use serde::Deserialize;
use ssfd_engine::{Flush, Tags};
use std::collections::BTreeSet;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatcher {
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    unset: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    name: RawMatcher,
    #[serde(default)]
    tags: Vec<RawMatcher>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSinks {
    #[serde(default)]
    matched: Vec<String>,
    #[serde(default)]
    not_matched: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "match")]
    matches: Vec<RawMatch>,
    #[serde(default)]
    sinks: RawSinks,
}

#[derive(Clone, Debug)]
enum Pattern {
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl Pattern {
    fn new(raw: &RawMatcher, any_allowed: bool) -> Result<Pattern, String> {
        Ok(match raw.kind.as_str() {
            "any" if any_allowed => Pattern::Any,
            "exact" => Pattern::Exact(raw.value.clone()),
            "prefix" => Pattern::Prefix(raw.value.clone()),
            "regex" => Pattern::Regex(
                Regex::new(&raw.value).map_err(|e| format!("bad regex `{}`: {e}", raw.value))?,
            ),
            other => return Err(format!("unknown matcher kind `{other}`")),
        })
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(value) => text == value,
            Pattern::Prefix(value) => text.starts_with(value.as_str()),
            Pattern::Regex(regex) => regex.is_match(text),
        }
    }
}

#[derive(Clone, Debug)]
struct Match {
    name: Pattern,
    tags: Vec<(Pattern, bool)>,
}

impl Match {
    fn matches(&self, name: &str, tags: &Tags) -> bool {
        self.name.matches(name)
            && self.tags.iter().all(|(pattern, unset)| {
                let any = tags.iter().any(|tag| pattern.matches(tag));
                any != *unset
            })
    }
}

#[derive(Clone, Debug)]
struct Rule {
    matches: Vec<Match>,
    matched: Vec<String>,
    not_matched: Vec<String>,
}

/// The parsed routing table.
#[derive(Clone, Debug, Default)]
pub struct Router {
    rules: Vec<Rule>,
}

impl Router {
    /// Parses `metric_sink_routing` (a YAML list); errors name the rule.
    pub fn from_yaml(value: &serde_yaml::Value) -> Result<Router, String> {
        let raw: Vec<RawRule> = serde_yaml::from_value(value.clone())
            .map_err(|e| format!("metric_sink_routing: {e}"))?;
        let mut rules = Vec::with_capacity(raw.len());
        for (index, rule) in raw.into_iter().enumerate() {
            let label = if rule.name.is_empty() {
                format!("#{}", index + 1)
            } else {
                rule.name.clone()
            };
            let mut matches = Vec::new();
            for entry in &rule.matches {
                let name = Pattern::new(&entry.name, true)
                    .map_err(|e| format!("metric_sink_routing rule {label}: name: {e}"))?;
                let mut tags = Vec::new();
                for tag in &entry.tags {
                    tags.push((
                        Pattern::new(tag, false)
                            .map_err(|e| format!("metric_sink_routing rule {label}: tags: {e}"))?,
                        tag.unset,
                    ));
                }
                matches.push(Match { name, tags });
            }
            rules.push(Rule {
                matches,
                matched: rule.sinks.matched,
                not_matched: rule.sinks.not_matched,
            });
        }
        Ok(Router { rules })
    }

    /// The sinks a metric goes to.
    pub fn sinks(&self, name: &str, tags: &Tags) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        for rule in &self.rules {
            let matched = rule.matches.iter().any(|m| m.matches(name, tags));
            let sinks = if matched {
                &rule.matched
            } else {
                &rule.not_matched
            };
            out.extend(sinks.iter().map(String::as_str));
        }
        out
    }

    /// Every sink named anywhere in the table.
    pub fn named_sinks(&self) -> BTreeSet<&str> {
        self.rules
            .iter()
            .flat_map(|r| r.matched.iter().chain(&r.not_matched))
            .map(String::as_str)
            .collect()
    }

    /// The part of `flush` that sink `sink` receives (metrics and histogram
    /// summaries by name and tags; events whole; nothing to forward).
    pub fn route(&self, sink: &str, flush: &Flush) -> Flush {
        Flush {
            timestamp: flush.timestamp,
            metrics: flush
                .metrics
                .iter()
                .filter(|m| self.sinks(&m.name, &m.tags).contains(sink))
                .cloned()
                .collect(),
            summaries: flush
                .summaries
                .iter()
                .filter(|s| self.sinks(&s.name, &s.tags).contains(sink))
                .cloned()
                .collect(),
            forward: Vec::new(),
            events: flush.events.clone(),
            durable: flush.durable.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"
- name: prod-app
  match:
    - name: {kind: prefix, value: "app."}
      tags:
        - {kind: exact, value: "env:prod"}
        - {kind: prefix, value: "debug:", unset: true}
    - name: {kind: regex, value: "^billing\\.(charge|refund)$"}
  sinks: {matched: [datadog], not_matched: [blackhole]}
- name: everything
  match:
    - name: {kind: any}
  sinks: {matched: [jsonl]}
- name: exact
  match:
    - name: {kind: exact, value: "sys.load"}
      tags:
        - {kind: regex, value: "^host:web-[0-9]+$"}
  sinks: {matched: [remote], not_matched: []}
"#;

    #[test]
    fn routing_table() {
        let router = Router::from_yaml(&serde_yaml::from_str(TABLE).unwrap()).unwrap();
        let tags = |t: &[&str]| t.iter().collect::<Tags>();
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("app.requests", &["env:prod"], &["datadog", "jsonl"]),
            (
                "app.requests",
                &["env:prod", "region:eu"],
                &["datadog", "jsonl"],
            ),
            (
                "app.requests",
                &["env:prod", "debug:1"],
                &["blackhole", "jsonl"],
            ),
            ("app.requests", &["env:dev"], &["blackhole", "jsonl"]),
            ("app.requests", &[], &["blackhole", "jsonl"]),
            ("web.app.requests", &["env:prod"], &["blackhole", "jsonl"]),
            ("billing.charge", &[], &["datadog", "jsonl"]),
            ("billing.charged", &[], &["blackhole", "jsonl"]),
            ("xbilling.refund", &[], &["blackhole", "jsonl"]),
            (
                "sys.load",
                &["host:web-12"],
                &["blackhole", "jsonl", "remote"],
            ),
            ("sys.load", &["host:web-x"], &["blackhole", "jsonl"]),
            ("sys.loadavg", &["host:web-1"], &["blackhole", "jsonl"]),
        ];
        for (name, tag_list, want) in cases {
            let got: Vec<&str> = router.sinks(name, &tags(tag_list)).into_iter().collect();
            assert_eq!(&got, want, "{name} {tag_list:?}");
        }
        assert_eq!(
            router.named_sinks().into_iter().collect::<Vec<_>>(),
            ["blackhole", "datadog", "jsonl", "remote"]
        );
    }

    #[test]
    fn unanchored_regex_as_go() {
        let table = "- match: [{name: {kind: regex, value: \"load\"}}]\n  sinks: {matched: [a]}\n";
        let router = Router::from_yaml(&serde_yaml::from_str(table).unwrap()).unwrap();
        assert!(router.sinks("sys.loadavg", &Tags::default()).contains("a"));
    }

    #[test]
    fn bad_tables_are_errors_naming_the_rule() {
        for (table, want) in [
            (
                "- name: r1\n  match: [{name: {kind: fuzzy, value: x}}]\n",
                "rule r1: name: unknown matcher kind `fuzzy`",
            ),
            (
                "- name: r2\n  match: [{name: {kind: any}, tags: [{kind: any}]}]\n",
                "rule r2: tags: unknown matcher kind `any`",
            ),
            (
                "- match: [{name: {kind: regex, value: \"(\"}}]\n",
                "rule #1: name: bad regex",
            ),
            ("- name: r3\n  bogus: 1\n", "unknown field `bogus`"),
        ] {
            let error = Router::from_yaml(&serde_yaml::from_str(table).unwrap()).unwrap_err();
            assert!(error.contains(want), "{error}");
        }
    }
}
