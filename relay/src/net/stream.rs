//! TCP and TLS client connections: RFC 8656 framing of STUN messages and ChannelData over a
//! byte stream, one reader task and one writer task per connection.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::{SharedRef, now};
use crate::Pii;
use crate::proto::codec;
use crate::proto::server::{FiveTuple, Transport};

/// Time allowed for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that sends nothing for this long is closed (allocations refresh well within it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(900);
/// Frames queued for one client before further ones are dropped.
const WRITE_QUEUE: usize = 1024;
/// Largest frame accepted (a STUN message or ChannelData with a full UDP payload).
const MAX_FRAME: usize = codec::HEADER_LEN + 65_535;

/// Accepts connections on `listener` until the task is dropped.
pub(super) async fn listen(
    shared: SharedRef,
    listener_index: u16,
    transport: Transport,
    listener: TcpListener,
    tls: Option<Rc<RefCell<TlsAcceptor>>>,
) {
    loop {
        let (tcp, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tuple = FiveTuple {
            transport,
            listener: listener_index,
            client,
        };
        let acceptor = tls.as_ref().map(|t| t.borrow().clone());
        tokio::task::spawn_local(connection(shared.clone(), tuple, tcp, acceptor));
    }
}

async fn connection(shared: SharedRef, tuple: FiveTuple, tcp: TcpStream, tls: Option<TlsAcceptor>) {
    match tls {
        None => serve(shared, tuple, tcp).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve(shared, tuple, stream).await,
                Ok(Err(e)) => {
                    debug!(client = %Pii(tuple.client), error = %e, "tls handshake failed")
                }
                Err(_) => debug!(client = %Pii(tuple.client), "tls handshake timed out"),
            }
        }
    }
}

async fn serve<S>(shared: SharedRef, tuple: FiveTuple, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    shared.borrow_mut().register_stream(tuple, tx);
    let write_task = tokio::task::spawn_local(async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });

    let result = read_frames(&shared, tuple, &mut reader).await;
    if let Err(reason) = result {
        debug!(client = %Pii(tuple.client), reason, "stream closed");
    }
    shared.borrow_mut().stream_closed(tuple, now());
    // Dropping the sender (in stream_closed) lets the writer flush what is queued and stop.
    let _ = tokio::time::timeout(Duration::from_secs(1), write_task).await;
}

async fn read_frames<R>(
    shared: &SharedRef,
    tuple: FiveTuple,
    reader: &mut R,
) -> Result<(), &'static str>
where
    R: AsyncRead + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let mut consumed = 0;
        while let Some(rest) = buf.get(consumed..) {
            let Some(len) = codec::stream_frame_len(rest).map_err(|_| "not stun framing")? else {
                break;
            };
            let frame = rest.get(..len).unwrap_or_default();
            shared.borrow_mut().client_input(now(), tuple, frame);
            consumed += len;
        }
        buf.drain(..consumed);
        if buf.len() > MAX_FRAME {
            return Err("frame too large");
        }
        match tokio::time::timeout(IDLE_TIMEOUT, reader.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err("read error"),
            Err(_) => return Err("idle"),
        }
    }
}
