//! Security events as typed, hash-chained audit records.
//!
//! Each account has its own chain (events without an account go to the `system` chain). A
//! record carries the SHA-256 of the previous record of its chain, and its own hash covers its
//! canonical JSON form (all fields but `hash`, in the order of [`Record`]'s fields, `fields`
//! sorted by key). Editing or deleting a record in an export breaks the chain at that point;
//! [`verify_export`] says where.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{Database, Row, Statement, StoreError, Value};
use crate::{Error, Timestamp, crypto};

/// The chain of events that belong to no account.
pub const SYSTEM_CHAIN: &str = "system";
/// `prev_hash` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventType {
    /// An account was registered.
    AccountRegistered,
    /// An account was activated with its key.
    AccountActivated,
    /// A login (or second factor) succeeded.
    ConnectionSuccess,
    /// A login, second factor or token check failed.
    ConnectionFailure,
    /// A session (call) was requested.
    SessionRequest,
    /// A session was accepted by the invitee.
    SessionAccepted,
    /// A session was aborted.
    SessionAborted,
    /// A session ended.
    SessionEnded,
    /// A document was shared in a session.
    DocumentShared,
    /// A password was reset with a code.
    PasswordReset,
    /// A password was changed by its owner.
    PasswordChanged,
    /// TOTP two-factor was turned on.
    TotpEnabled,
    /// TOTP two-factor was turned off.
    TotpDisabled,
    /// A session was ended by its owner.
    Logout,
    /// A used refresh token came back: the session was revoked.
    TokenReuseDetected,
    /// A participant joined a room's signaling channel (or came back to it).
    RoomJoined,
    /// A participant's place in a room's signaling channel was released.
    RoomLeft,
}

impl EventType {
    /// The snake_case wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountRegistered => "account_registered",
            Self::AccountActivated => "account_activated",
            Self::ConnectionSuccess => "connection_success",
            Self::ConnectionFailure => "connection_failure",
            Self::SessionRequest => "session_request",
            Self::SessionAccepted => "session_accepted",
            Self::SessionAborted => "session_aborted",
            Self::SessionEnded => "session_ended",
            Self::DocumentShared => "document_shared",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::TotpEnabled => "totp_enabled",
            Self::TotpDisabled => "totp_disabled",
            Self::Logout => "logout",
            Self::TokenReuseDetected => "token_reuse_detected",
            Self::RoomJoined => "room_joined",
            Self::RoomLeft => "room_left",
        }
    }
}

/// Whether the operation succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It did.
    Success,
    /// It did not.
    Failure,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// An event about to be recorded.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// How it ended.
    pub outcome: Outcome,
    /// The account that asked, if known; it also selects the chain.
    pub requester: Option<String>,
    /// A short human description, never carrying secrets.
    pub message: String,
    /// The room (session) concerned.
    pub room_id: Option<String>,
    /// Extra context: client address, user agent, error code, method …
    pub fields: BTreeMap<String, String>,
    /// The account whose chain receives the record, when it is not the requester's (the
    /// other participant of a call sees the caller's request in their own chain).
    pub owner: Option<String>,
}

impl Event {
    /// An event with no room and no fields.
    pub fn new(kind: EventType, outcome: Outcome, requester: Option<&str>, message: &str) -> Self {
        Self {
            kind,
            outcome,
            requester: requester.map(str::to_owned),
            message: message.to_owned(),
            room_id: None,
            fields: BTreeMap::new(),
            owner: None,
        }
    }

    /// Files the record in `account`'s chain instead of the requester's.
    pub fn in_chain_of(mut self, account: &str) -> Self {
        self.owner = Some(account.to_owned());
        self
    }

    /// Adds a field.
    pub fn field(mut self, key: &str, value: impl Into<String>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// Sets the room.
    pub fn room(mut self, room_id: &str) -> Self {
        self.room_id = Some(room_id.to_owned());
        self
    }

    fn chain(&self) -> &str {
        self.owner
            .as_deref()
            .or(self.requester.as_deref())
            .unwrap_or(SYSTEM_CHAIN)
    }
}

/// A stored audit record, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in its chain, from 1.
    pub seq: i64,
    /// Milliseconds since the epoch.
    pub time: i64,
    /// Event type (snake_case).
    #[serde(rename = "type")]
    pub kind: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The account that asked.
    pub requester: Option<String>,
    /// Human description.
    pub message: String,
    /// The room concerned.
    pub room_id: Option<String>,
    /// Extra context.
    pub fields: BTreeMap<String, String>,
    /// Hash of the previous record in the chain.
    pub prev_hash: String,
    /// Hash of this record.
    #[serde(default)]
    pub hash: String,
}

impl Record {
    /// SHA-256 (hex) of the canonical form: the record as JSON with `hash` left empty.
    pub fn compute_hash(&self) -> String {
        let canonical = Self {
            hash: String::new(),
            ..self.clone()
        };
        // Serialising a struct of strings and integers cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        crypto::sha256_hex(&bytes)
    }

    /// The record of `event` at position `seq` after `prev_hash`, with its hash.
    fn sealed(seq: i64, prev_hash: String, now: Timestamp, event: &Event) -> Self {
        let mut record = Self {
            seq,
            time: now.millis(),
            kind: event.kind.as_str().to_owned(),
            outcome: event.outcome.as_str().to_owned(),
            requester: event.requester.clone(),
            message: event.message.clone(),
            room_id: event.room_id.clone(),
            fields: event.fields.clone(),
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }

    fn from_row(row: &Row) -> Option<Self> {
        Some(Self {
            seq: row.int(0)?,
            time: row.int(1)?,
            kind: row.text(2)?.to_owned(),
            outcome: row.text(3)?.to_owned(),
            requester: row.text(4).map(str::to_owned),
            message: row.text(5)?.to_owned(),
            room_id: row.text(6).map(str::to_owned),
            fields: serde_json::from_str(row.text(7)?).ok()?,
            prev_hash: row.text(8)?.to_owned(),
            hash: row.text(9)?.to_owned(),
        })
    }
}

const HEAD: &str = "SELECT seq, hash FROM audit_log WHERE chain = ?1 ORDER BY seq DESC LIMIT 1";
const INSERT: &str = "\
INSERT INTO audit_log (chain, seq, time, type, outcome, requester, message, room_id, fields,
                       prev_hash, hash)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
const EXPORT: &str = "\
SELECT seq, time, type, outcome, requester, message, room_id, fields, prev_hash, hash
FROM audit_log WHERE chain = ?1 ORDER BY seq";

/// How often a write is retried when another writer extended the same chain first. Each round
/// lets at least one writer through, so this bounds the parallel writers one chain can absorb.
const CHAIN_RETRIES: usize = 64;

/// Writes `change` and the record of `event` in one atomic batch, so no change lands without
/// its record. Returns the rows of each statement of `change`.
pub async fn commit<D: Database>(
    db: &D,
    now: Timestamp,
    change: Vec<Statement>,
    event: &Event,
) -> Result<Vec<Vec<Row>>, Error> {
    let mut last = StoreError::Conflict;
    for _ in 0..CHAIN_RETRIES {
        let head = db
            .query(Statement::new(HEAD, vec![event.chain().into()]))
            .await?;
        let (seq, prev_hash) = match head.first() {
            Some(row) => (
                row.int(0).ok_or(Error::Corrupt("audit head"))?,
                row.text(1).ok_or(Error::Corrupt("audit head"))?.to_owned(),
            ),
            None => (0, GENESIS.to_owned()),
        };
        let mut record = Record {
            seq: seq + 1,
            time: now.millis(),
            kind: event.kind.as_str().to_owned(),
            outcome: event.outcome.as_str().to_owned(),
            requester: event.requester.clone(),
            message: event.message.clone(),
            room_id: event.room_id.clone(),
            fields: event.fields.clone(),
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        let mut stmts = change.clone();
        stmts.push(insert(event.chain(), &record));
        match db.batch(stmts).await {
            Ok(mut rows) => {
                rows.pop();
                return Ok(rows);
            }
            Err(StoreError::Conflict) => last = StoreError::Conflict,
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}

/// Writes `change` and the records of all `events` (in one or several chains) in one atomic
/// batch, retrying while other writers extend the same chains. Returns the rows of `change`.
pub async fn commit_all<D: Database>(
    db: &D,
    now: Timestamp,
    change: Vec<Statement>,
    events: &[Event],
) -> Result<Vec<Vec<Row>>, Error> {
    for _ in 1..CHAIN_RETRIES {
        match try_commit_all(db, now, change.clone(), events).await {
            Err(Error::Store(StoreError::Conflict)) => {}
            other => return other,
        }
    }
    try_commit_all(db, now, change, events).await
}

/// One attempt of [`commit_all`]: a conflict (another writer extended a chain first, or a
/// statement of `change` hit a constraint) comes back as `Error::Store(StoreError::Conflict)`
/// for the caller to re-check its preconditions and try again.
pub async fn try_commit_all<D: Database>(
    db: &D,
    now: Timestamp,
    change: Vec<Statement>,
    events: &[Event],
) -> Result<Vec<Vec<Row>>, Error> {
    let mut heads: BTreeMap<&str, (i64, String)> = BTreeMap::new();
    let mut stmts = change;
    let changes = stmts.len();
    for event in events {
        let chain = event.chain();
        if !heads.contains_key(chain) {
            let head = db.query(Statement::new(HEAD, vec![chain.into()])).await?;
            let top = match head.first() {
                Some(row) => (
                    row.int(0).ok_or(Error::Corrupt("audit head"))?,
                    row.text(1).ok_or(Error::Corrupt("audit head"))?.to_owned(),
                ),
                None => (0, GENESIS.to_owned()),
            };
            heads.insert(chain, top);
        }
        let Some((seq, prev_hash)) = heads.get_mut(chain) else {
            return Err(Error::Corrupt("audit head"));
        };
        let record = Record::sealed(*seq + 1, prev_hash.clone(), now, event);
        *seq = record.seq;
        prev_hash.clone_from(&record.hash);
        stmts.push(insert(chain, &record));
    }
    let mut rows = db.batch(stmts).await?;
    rows.truncate(changes);
    Ok(rows)
}

/// Records `event` alone (an event that changes nothing else, such as a failed login).
pub async fn record<D: Database>(db: &D, now: Timestamp, event: &Event) -> Result<(), Error> {
    commit(db, now, Vec::new(), event).await.map(drop)
}

fn insert(chain: &str, r: &Record) -> Statement {
    let fields = serde_json::to_string(&r.fields).unwrap_or_else(|_| "{}".to_owned());
    Statement::new(
        INSERT,
        vec![
            chain.into(),
            r.seq.into(),
            r.time.into(),
            r.kind.as_str().into(),
            r.outcome.as_str().into(),
            Value::from(r.requester.clone()),
            r.message.as_str().into(),
            Value::from(r.room_id.clone()),
            fields.into(),
            r.prev_hash.as_str().into(),
            r.hash.as_str().into(),
        ],
    )
}

/// Every record of `account`'s chain, oldest first.
pub async fn export<D: Database>(db: &D, account: &str) -> Result<Vec<Record>, Error> {
    let rows = db
        .query(Statement::new(EXPORT, vec![account.into()]))
        .await?;
    rows.iter()
        .map(|r| Record::from_row(r).ok_or(Error::Corrupt("audit record")))
        .collect()
}

/// Records as JSON Lines.
pub fn to_jsonl(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        if let Ok(line) = serde_json::to_string(r) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Records as CSV (RFC 4180), `fields` as a JSON object in one column.
pub fn to_csv(records: &[Record]) -> String {
    let mut out =
        String::from("seq,time,type,outcome,requester,message,room_id,fields,prev_hash,hash\r\n");
    for r in records {
        let fields = serde_json::to_string(&r.fields).unwrap_or_default();
        let cells = [
            r.seq.to_string(),
            r.time.to_string(),
            r.kind.clone(),
            r.outcome.clone(),
            r.requester.clone().unwrap_or_default(),
            r.message.clone(),
            r.room_id.clone().unwrap_or_default(),
            fields,
            r.prev_hash.clone(),
            r.hash.clone(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(value: &str) -> String {
    // Quote always, and defuse spreadsheet formulas.
    let defused = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_owned(),
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

/// Where and why an exported chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain broken at line {line}: {reason}")]
pub struct ChainBreak {
    /// 1-based line number in the export.
    pub line: usize,
    /// What is wrong there.
    pub reason: String,
}

/// Verifies a JSON Lines export: each line parses, its hash matches its content, the first
/// record is `seq` 1 on the genesis hash, each `prev_hash` is the previous line's hash, and
/// sequence numbers follow each other. Returns the number of records.
///
/// The hashes are not keyed: this proves that an export is whole and unedited between its first
/// and last record, not that its last record is the newest one.
pub fn verify_export(text: &str) -> Result<usize, ChainBreak> {
    let mut previous: Option<Record> = None;
    let mut count = 0;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let brk = |reason: String| ChainBreak {
            line: line_no,
            reason,
        };
        let record: Record =
            serde_json::from_str(line).map_err(|e| brk(format!("not a record: {e}")))?;
        if record.compute_hash() != record.hash {
            return Err(brk(format!(
                "seq {}: content does not match its hash",
                record.seq
            )));
        }
        match &previous {
            None if record.seq != 1 || record.prev_hash != GENESIS => {
                return Err(brk(format!(
                    "seq {}: the export does not start at the beginning of its chain",
                    record.seq
                )));
            }
            None => {}
            Some(p) if record.seq != p.seq + 1 => {
                return Err(brk(format!(
                    "seq {} follows seq {}: records are missing",
                    record.seq, p.seq
                )));
            }
            Some(p) if record.prev_hash != p.hash => {
                return Err(brk(format!(
                    "seq {}: previous hash does not match seq {}",
                    record.seq, p.seq
                )));
            }
            Some(_) => {}
        }
        previous = Some(record);
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for seq in 1..=n {
            let mut r = Record {
                seq,
                time: 1_700_000_000_000 + seq,
                kind: "connection_success".into(),
                outcome: "success".into(),
                requester: Some("acct".into()),
                message: format!("login {seq}"),
                room_id: None,
                fields: BTreeMap::from([("client_address".into(), "127.0.0.1".into())]),
                prev_hash: out.last().map_or(GENESIS.to_owned(), |p| p.hash.clone()),
                hash: String::new(),
            };
            r.hash = r.compute_hash();
            out.push(r);
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_export(&to_jsonl(&chain(5))), Ok(5));
    }

    #[test]
    fn edited_record_is_found() {
        let text = to_jsonl(&chain(5)).replace("login 3", "login X");
        assert_eq!(verify_export(&text).unwrap_err().line, 3);
    }

    #[test]
    fn deleted_record_is_found() {
        let mut records = chain(5);
        records.remove(1);
        let err = verify_export(&to_jsonl(&records)).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("missing"), "{}", err.reason);
    }

    #[test]
    fn removed_head_is_found() {
        let records = chain(4);
        let err = verify_export(&to_jsonl(&records[1..])).unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn rehashed_edit_still_breaks_the_link() {
        let mut records = chain(4);
        records[1].message = "forged".into();
        records[1].hash = records[1].compute_hash();
        assert_eq!(verify_export(&to_jsonl(&records)).unwrap_err().line, 3);
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut records = chain(1);
        records[0].message = "=HYPERLINK(\"x\")".into();
        let csv = to_csv(&records);
        assert!(csv.starts_with("seq,time,type,outcome,requester,message,room_id,fields"));
        assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{csv}");
    }
}
