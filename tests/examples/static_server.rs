//! The download benchmark's baseline: a minimal static file server (tokio, 1 MiB
//! buffered copies, HTTP/1.1 keep-alive off) that answers every GET with one file.
//! Prints `http://127.0.0.1:<port>/` and serves until killed.
//!
//!     cargo run --release -p agnes-tests --example static_server -- FILE

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let path =
        std::path::PathBuf::from(std::env::args().nth(1).expect("usage: static_server FILE"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("http://{}/", listener.local_addr().unwrap());
    loop {
        let (mut sock, _) = listener.accept().await.unwrap();
        let path = path.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut read = 0;
            // read the request head
            while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => read += n,
                }
                if read == buf.len() {
                    return;
                }
            }
            let Ok(mut file) = tokio::fs::File::open(&path).await else {
                return;
            };
            let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
            );
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                match file.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sock.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sock.shutdown().await;
        });
    }
}
