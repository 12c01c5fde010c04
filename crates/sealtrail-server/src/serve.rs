//! The HTTP/1.1 accept loop: hyper's connection builder serving the router, with graceful
//! shutdown.
//!
//! We serve HTTP/1.1 only, with hyper's own builder rather than `axum::serve`: the latter
//! sniffs each connection for an HTTP/2 preface, and the 24 sniffed bytes make hyper grow
//! the connection's read buffer from 8 to 16 KiB — memory that every idle stream
//! subscriber then holds for as long as it stays connected. Serving ourselves also lets
//! us bound how long a client may take to send its request head, and serve a connection
//! whose first request is an SSE stream without hyper's per-connection buffers
//! (`first_request`).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

mod first_request;
use first_request::{FirstRequest, Rewind};

/// How long to wait before accepting again after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Bounds on every connection.
pub struct ConnectionLimits {
    /// Longest a client may take to complete the TLS handshake and to send a request head
    /// (also how long a kept-alive connection may sit idle).
    pub header_read_timeout: Duration,
    /// Largest request head; hyper answers 431 above it.
    pub max_header_bytes: usize,
    /// Most connections at once; a connection beyond it is closed on arrival.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, calls
/// `closing` (which ends endless responses such as streams), and waits for every
/// connection's response in flight to finish. A client that takes longer than
/// `header_read_timeout` to complete the TLS handshake (with `tls`) or to send a request
/// head is disconnected.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    closing: impl FnOnce(),
) {
    let header_read_timeout = limits.header_read_timeout;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let max_head = limits.max_header_bytes;
    let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; when all are gone, recv() returns None.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Per-connection errors (reset before accept) and descriptor exhaustion
                    // are passing conditions: log, wait a moment, keep serving.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "connection refused: limits.max_connections are open"
            );
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (stop, alive) = (stop_rx.clone(), alive_tx.clone());
        let (http, app, tls) = (http.clone(), app.clone(), tls.clone());
        tokio::spawn(async move {
            let (_alive, _permit) = (alive, permit);
            let Some(acceptor) = tls else {
                return drive(
                    &http,
                    socket,
                    peer,
                    app,
                    stop,
                    header_read_timeout,
                    max_head,
                )
                .await;
            };
            // Boxed: a TLS session's state is kilobytes, which would otherwise size every
            // connection's task, plain ones included (idle stream subscribers count them).
            Box::pin(async move {
                match tokio::time::timeout(header_read_timeout, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => {
                        drive(
                            &http,
                            stream,
                            peer,
                            app,
                            stop,
                            header_read_timeout,
                            max_head,
                        )
                        .await
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            })
            .await
        });
    }
    drop(listener);
    closing();
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

/// Serves one connection (plain or TLS) until it ends, closing it gracefully on `stop`.
/// Every request carries the client's address (for the access log). A connection whose
/// first request is a stream is answered without hyper (`first_request`).
async fn drive<IO>(
    http: &http1::Builder,
    mut io: IO,
    peer: std::net::SocketAddr,
    app: Router,
    mut stop: watch::Receiver<bool>,
    header_read_timeout: Duration,
    max_head: usize,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let first = tokio::select! {
        first = first_request::classify(&mut io, header_read_timeout, max_head) => first,
        // A connection that has not sent a request yet is closed at once, as hyper does.
        _ = stop.wait_for(|stop| *stop) => return,
    };
    let io = match first {
        FirstRequest::Other(prefix) => Rewind::new(prefix, io),
        FirstRequest::Stream(head) => {
            // Boxed: the stream's state stays out of every other connection's task.
            let client = crate::access::ClientAddr(peer);
            return Box::pin(first_request::serve_stream(io, head, client, app)).await;
        }
        FirstRequest::TooLarge => return first_request::refuse_large_head(io).await,
        FirstRequest::Gone => return,
    };
    let client = crate::access::ClientAddr(peer);
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(client);
            tower_service::Service::call(&mut app.clone(), request)
        });
    let connection = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
    }
    if let Err(error) = connection.await {
        tracing::debug!(%error, "connection ended with an error while closing");
    }
}
