//! Message senders: a local JSON-lines sink (the default), SMTP, or a provider's HTTP API.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bedside_core::outbox::{Channel, Message, Outbox, OutboxError};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// Where messages go, chosen by configuration.
#[derive(Clone)]
pub enum HostOutbox {
    /// Appends each message as one JSON line to a file and logs that it did.
    File(FileSink),
    /// Emails over SMTP; SMS through the HTTP provider if one is configured, else to the file.
    Smtp {
        /// The SMTP sender.
        mail: Box<SmtpSender>,
        /// Where SMS go.
        sms: Box<HostOutbox>,
    },
    /// Everything through a provider's HTTP API.
    Http(HttpSender),
    /// Through a background task in front of one of the others.
    Queued(Queue),
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials and the token is one: show neither.
        f.debug_struct("HttpSender").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HostOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(s) => write!(f, "File({})", s.path.display()),
            Self::Smtp { .. } => f.write_str("Smtp"),
            Self::Http(_) => f.write_str("Http"),
            Self::Queued(_) => f.write_str("Queued"),
        }
    }
}

/// Hands messages to a background task that delivers them, so a request never waits on (or
/// times) a mail server or a provider API.
#[derive(Clone, Debug)]
pub struct Queue {
    tx: tokio::sync::mpsc::Sender<Message>,
}

impl Queue {
    /// Starts the delivery task for `sender`, holding at most `capacity` waiting messages.
    pub fn spawn(sender: HostOutbox, capacity: usize) -> Self {
        let sender = Box::new(sender);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(capacity);
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let (channel, purpose) = (message.channel, message.purpose);
                if let Err(error) = Box::pin(sender.send(message)).await {
                    // Server replies often quote the recipient: details only at debug level.
                    tracing::error!(?channel, ?purpose, "message delivery failed");
                    tracing::debug!(%error, "message delivery failure detail");
                }
            }
        });
        Self { tx }
    }
}

impl Outbox for Queue {
    async fn send(&self, message: Message) -> Result<(), OutboxError> {
        self.tx.try_send(message).map_err(|e| {
            tracing::warn!(
                capacity = self.tx.max_capacity(),
                "outbox queue full or closed"
            );
            OutboxError::Delivery(e.to_string())
        })
    }
}

impl Outbox for HostOutbox {
    async fn send(&self, message: Message) -> Result<(), OutboxError> {
        match self {
            Self::File(sink) => sink.send(message).await,
            Self::Smtp { mail, sms } => match message.channel {
                Channel::Email => mail.send(message).await,
                Channel::Sms => Box::pin(sms.send(message)).await,
            },
            Self::Http(http) => http.send(message).await,
            Self::Queued(queue) => queue.send(message).await,
        }
    }
}

/// The local sink: `<data dir>/outbox.jsonl`.
#[derive(Clone, Debug)]
pub struct FileSink {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl FileSink {
    /// A sink appending to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Arc::new(Mutex::new(())),
        }
    }

    async fn send(&self, message: Message) -> Result<(), OutboxError> {
        let line =
            serde_json::to_string(&message).map_err(|e| OutboxError::Delivery(e.to_string()))?;
        let path = self.path.clone();
        let lock = Arc::clone(&self.lock);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::OpenOptionsExt as _;
            let _guard = lock.lock();
            // The sink holds live codes: readable by the service account only.
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(format!("{line}\n").as_bytes())
        })
        .await
        .map_err(|e| OutboxError::Delivery(e.to_string()))?
        .map_err(|e| OutboxError::Delivery(e.to_string()))?;
        tracing::info!(
            channel = ?message.channel,
            purpose = ?message.purpose,
            path = %self.path.display(),
            "message written to the local outbox"
        );
        Ok(())
    }
}

/// Sends emails through an SMTP server.
#[derive(Clone)]
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpSender {
    /// A sender for `url` (`smtp://host:port` plain, `smtp://…?tls=required` STARTTLS,
    /// `smtps://host:port` implicit TLS; user and password in the URL if needed).
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build();
        Ok(Self {
            transport,
            from: from.parse()?,
        })
    }

    async fn send(&self, message: Message) -> Result<(), OutboxError> {
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|_| OutboxError::Delivery("recipient is not a mailbox".into()))?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| OutboxError::Delivery(e.to_string()))?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let email = lettre::Message::builder()
            .message_id(Some(format!("<{id}@{}>", self.from.email.domain())))
            .from(self.from.clone())
            .to(to)
            .subject(message.subject)
            // A MIME part: declares MIME-Version and a UTF-8 text/plain content type.
            .singlepart(lettre::message::SinglePart::plain(message.body))
            .map_err(|e| OutboxError::Delivery(e.to_string()))?;
        self.transport
            .send(email)
            .await
            .map_err(|e| OutboxError::Delivery(e.to_string()))?;
        tracing::info!(purpose = ?message.purpose, "email handed to the SMTP server");
        Ok(())
    }
}

/// Posts each message as JSON to a provider endpoint with a bearer token.
#[derive(Clone)]
pub struct HttpSender {
    url: String,
    token: String,
    agent: ureq::Agent,
}

impl HttpSender {
    /// A sender posting to `url` with `token`.
    pub fn new(url: String, token: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .http_status_as_error(true)
            .build()
            .into();
        Self { url, token, agent }
    }

    async fn send(&self, message: Message) -> Result<(), OutboxError> {
        let this = self.clone();
        let purpose = message.purpose;
        tokio::task::spawn_blocking(move || {
            this.agent
                .post(&this.url)
                .header("authorization", &format!("Bearer {}", this.token))
                .send_json(&message)
                .map(drop)
                .map_err(|e| OutboxError::Delivery(e.to_string()))
        })
        .await
        .map_err(|e| OutboxError::Delivery(e.to_string()))??;
        tracing::info!(?purpose, "message handed to the provider API");
        Ok(())
    }
}
