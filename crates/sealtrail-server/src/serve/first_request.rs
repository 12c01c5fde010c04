//! A connection whose first request is `GET /v1/stream` is served without hyper.
//!
//! An SSE stream is an HTTP/1.1 response that may last for days, and hyper gives every
//! connection it serves an 8 KiB read buffer and an 8 KiB write buffer for its whole life —
//! 16 KiB of every idle subscriber, fixed in hyper (`INIT_BUFFER_SIZE`), twice what the
//! subscription itself holds. So the accept loop reads a connection's first bytes itself:
//! a stream request is parsed here (httparse, the parser hyper uses), answered by the same
//! router as every request, and its body written straight to the socket in chunked
//! encoding, after which the connection closes; the head's buffer is freed before the
//! response starts. Any other connection goes to hyper with the bytes already read put
//! back in front of it ([`Rewind`]), so hyper sees exactly what the client sent.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, Version, header};
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

/// The request line a stream served here starts with (query or not).
const STREAM_PREFIX: &[u8] = b"GET /v1/stream";
/// Headers a stream request may have (hyper's default is 100).
const MAX_HEADERS: usize = 100;
/// Waiting frames gathered into one write, up to about this much.
const COALESCE_BYTES: usize = 64 * 1024;

/// What the first bytes of a connection turned out to be.
pub enum FirstRequest {
    /// A `GET /v1/stream` request head, complete (it and anything after it).
    Stream(Vec<u8>),
    /// Something else: the bytes read so far, for hyper.
    Other(Vec<u8>),
    /// A stream request whose head is larger than allowed.
    TooLarge,
    /// The client closed or timed out before the request was known.
    Gone,
}

/// Reads until the first request is known to be a stream request (and its head is
/// complete) or not; `max_head` bounds a stream request's head.
pub async fn classify<IO: AsyncRead + Unpin>(
    io: &mut IO,
    timeout: Duration,
    max_head: usize,
) -> FirstRequest {
    let mut bytes = Vec::with_capacity(512);
    let read = async {
        loop {
            let compared = bytes.len().min(STREAM_PREFIX.len());
            if bytes[..compared] != STREAM_PREFIX[..compared] {
                return FirstRequest::Other(std::mem::take(&mut bytes));
            }
            if bytes.len() > STREAM_PREFIX.len() {
                // `GET /v1/streamx` is not the stream endpoint.
                if !matches!(bytes[STREAM_PREFIX.len()], b'?' | b' ') {
                    return FirstRequest::Other(std::mem::take(&mut bytes));
                }
                match head_end(&bytes) {
                    Some(end) if end <= max_head => {
                        return FirstRequest::Stream(std::mem::take(&mut bytes));
                    }
                    Some(_) => return FirstRequest::TooLarge,
                    None => {}
                }
            }
            if bytes.len() >= max_head {
                return FirstRequest::TooLarge;
            }
            bytes.reserve(512);
            match io.read_buf(&mut bytes).await {
                Ok(0) | Err(_) => return FirstRequest::Gone,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(FirstRequest::Gone)
}

/// Where a request head ends: after its blank line (CRLF, or a bare LF as httparse allows).
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(bytes, b"\r\n\r\n").map(|at| at + 4);
    let lf = memchr::memmem::find(bytes, b"\n\n").map(|at| at + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Answers the stream request in `head` on `io`, then closes the connection.
pub async fn serve_stream<IO>(
    mut io: IO,
    head: Vec<u8>,
    client: crate::access::ClientAddr,
    app: Router,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = match parse(&head, client) {
        Ok(request) => request,
        Err(reason) => {
            let body = format!("{{\"code\":\"bad_request\",\"message\":\"{reason}\"}}");
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = io.write_all(answer.as_bytes()).await;
            let _ = io.shutdown().await;
            return;
        }
    };
    drop(head);
    let chunked = request.version() != Version::HTTP_10;
    let response = match tower_service::Service::call(&mut app.clone(), request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    drop(app);
    let (mut reader, mut writer) = tokio::io::split(io);
    let written = write_response(&mut writer, response, &mut reader, chunked).await;
    if written.is_ok() {
        let _ = writer.shutdown().await;
    }
}

/// Answers a stream request whose head is over `limits.max_header_bytes` with 431, as
/// hyper answers any other, and closes.
pub async fn refuse_large_head<IO: AsyncWrite + Unpin>(mut io: IO) {
    let body = r#"{"code":"header_too_large","message":"the request head is larger than limits.max_header_bytes"}"#;
    let answer = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = io.write_all(answer.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// The request in a complete head; the error is the reason, for a 400.
fn parse(head: &[u8], client: crate::access::ClientAddr) -> Result<Request<Body>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete request head"),
        Err(_) => return Err("malformed request head"),
    }
    let mut request = Request::builder()
        .method(parsed.method.ok_or("no method")?)
        .uri(parsed.path.ok_or("no path")?)
        .version(if parsed.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        });
    for header in parsed.headers.iter() {
        request = request.header(header.name, header.value);
    }
    let mut request = request
        .body(Body::empty())
        .map_err(|_| "malformed request line or header")?;
    request.extensions_mut().insert(client);
    Ok(request)
}

/// Writes the head, then the body until it ends, the client goes away (a read that ends,
/// fails or brings anything: a stream request has no body) or a write fails. The body is
/// chunked for HTTP/1.1 and ended by the close for an HTTP/1.0 client, which knows no
/// chunks.
async fn write_response<R, W>(
    writer: &mut W,
    response: Response<Body>,
    reader: &mut R,
    chunked: bool,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (parts, body) = response.into_parts();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        // The framing is this function's: whatever the handler said about it is replaced.
        if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::CONTENT_LENGTH
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    writer.write_all(&head).await?;
    writer.flush().await?;
    drop(head);
    let mut frames = body.into_data_stream();
    let mut probe = [0u8; 1];
    loop {
        let data = tokio::select! {
            next = frames.next() => match next {
                Some(Ok(data)) => data,
                Some(Err(_)) => return Err(io::Error::other("the response body failed")),
                None => break,
            },
            // The client sends nothing more on a stream; a read ending means it has gone.
            _ = reader.read(&mut probe) => return Err(io::ErrorKind::ConnectionAborted.into()),
        };
        // Frames already waiting go out in the same write, as hyper coalesces them: one
        // system call for a burst rather than one per event.
        let mut chunks = Vec::with_capacity(data.len() + 16);
        push_chunk(&mut chunks, &data, chunked);
        let mut ended = false;
        while chunks.len() < COALESCE_BYTES {
            match frames.next().now_or_never() {
                Some(Some(Ok(more))) => push_chunk(&mut chunks, &more, chunked),
                Some(Some(Err(_))) => return Err(io::Error::other("the response body failed")),
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        writer.write_all(&chunks).await?;
        writer.flush().await?;
        if ended {
            break;
        }
    }
    if chunked {
        writer.write_all(b"0\r\n\r\n").await?;
    }
    writer.flush().await
}

/// One frame of the body: a chunk of chunked transfer coding, or the bytes as they are
/// (nothing for an empty frame, which as a chunk would end the body).
fn push_chunk(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if !chunked {
        out.extend_from_slice(data);
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `io` with bytes already read from it put back in front.
pub struct Rewind<IO> {
    prefix: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO> Rewind<IO> {
    /// `io`, whose next reads return `prefix` first.
    pub fn new(prefix: Vec<u8>, io: IO) -> Self {
        Self { prefix, at: 0, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                // Replayed: the buffer is not kept for the connection's life.
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn classify_bytes(chunks: &[&[u8]]) -> FirstRequest {
        let mut io = std::io::Cursor::new(chunks.concat());
        classify(&mut io, Duration::from_secs(1), 16 * 1024).await
    }

    #[tokio::test]
    async fn only_a_complete_stream_request_is_kept_here() {
        let stream = b"GET /v1/stream?tenant_id=bloom HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(classify_bytes(&[stream]).await, FirstRequest::Stream(b) if b == stream));
        let plain = b"GET /v1/stream HTTP/1.1\r\n\r\n";
        assert!(matches!(
            classify_bytes(&[plain]).await,
            FirstRequest::Stream(_)
        ));
        for other in [
            &b"GET /v1/events HTTP/1.1\r\n\r\n"[..],
            b"GET /v1/streamx HTTP/1.1\r\n\r\n",
            b"POST /v1/stream HTTP/1.1\r\n\r\n",
            b"HEAD /v1/stream HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(classify_bytes(&[other]).await, FirstRequest::Other(b) if b == other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        // A head cut off by the client is not waited for; one too large is refused.
        assert!(matches!(
            classify_bytes(&[b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n"]).await,
            FirstRequest::Gone
        ));
        let huge = format!(
            "GET /v1/stream HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        assert!(matches!(
            classify_bytes(&[huge.as_bytes()]).await,
            FirstRequest::TooLarge
        ));
    }

    #[tokio::test]
    async fn rewind_replays_the_prefix_then_reads_on() {
        let mut io = Rewind::new(
            b"GET /".to_vec(),
            std::io::Cursor::new(b"v1/events".to_vec()),
        );
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET /v1/events");
    }

    #[test]
    fn a_head_is_parsed_into_a_request_with_the_client_address() {
        let head = b"GET /v1/stream?since=5 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n";
        let client = crate::access::ClientAddr("127.0.0.1:9".parse().unwrap());
        let request = parse(head, client).unwrap();
        assert_eq!(request.uri(), "/v1/stream?since=5");
        assert_eq!(request.headers()["last-event-id"], "7");
        assert!(
            request
                .extensions()
                .get::<crate::access::ClientAddr>()
                .is_some()
        );
        assert!(parse(b"GET /v1/stream HTTP/1.1\r\nBad Header\r\n\r\n", client).is_err());
    }
}
