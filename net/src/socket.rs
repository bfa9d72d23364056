//! The synchronous rtnetlink socket every verb goes through.
//!
//! A [`Handle`] is one `NETLINK_ROUTE` socket. A netlink socket talks to the
//! network namespace it was *created* in, whatever namespace the thread using
//! it is in later; so a handle for another namespace is opened on a short-lived
//! thread that joined it (see [`Handle::open`]) and then used from anywhere,
//! without ever moving the caller's threads.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

use crate::error::{NetError, Result};
use crate::netns::Netns;

/// Label used in errors for the caller's own namespace.
pub const HOST_LABEL: &str = "host";

/// One rtnetlink socket bound to one network namespace; the verbs in
/// [`crate::link`], [`crate::addr`] and [`crate::route`] are its methods.
#[derive(Debug)]
pub struct Handle {
    sock: Socket,
    seq: u32,
    netns: String,
}

impl Handle {
    /// Opens a handle in `netns`, or in the caller's own namespace for `None`.
    ///
    /// The socket is created on a dedicated thread that joined the namespace,
    /// so the calling thread's namespace never changes.
    pub fn open(netns: Option<&Netns>) -> Result<Handle> {
        match netns {
            None => Handle::open_here(HOST_LABEL),
            Some(ns) => {
                let label = ns.name().to_owned();
                ns.run(move || Handle::open_here(&label))?
            }
        }
    }

    /// Opens a handle in the namespace of the calling thread, labelled `netns` in errors.
    pub fn open_here(netns: &str) -> Result<Handle> {
        let sock_err = |op, source| NetError::Socket {
            netns: netns.to_owned(),
            op,
            source,
        };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| sock_err("socket", e))?;
        sock.bind_auto().map_err(|e| sock_err("bind", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| sock_err("connect", e))?;
        Ok(Handle {
            sock,
            seq: 0,
            netns: netns.to_owned(),
        })
    }

    /// The namespace label used in errors ("host" or the namespace name).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Sends `msg` with ACK requested and returns the messages answered before
    /// the ACK (a GET's reply; nothing for changes); a refusal is turned into
    /// a typed error by `on_errno`.
    pub(crate) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        on_errno: impl FnOnce(Errno) -> NetError,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags, "request")?;
        match self.collect(seq, "request")? {
            Reply::Done(msgs) => Ok(msgs),
            Reply::Errno(errno) => Err(on_errno(errno)),
        }
    }

    /// Sends a dump request and returns every message of the reply.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &'static str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP, op)?;
        match self.collect(seq, op)? {
            Reply::Done(msgs) => Ok(msgs),
            Reply::Errno(errno) => Err(crate::error::kernel(op, "dump", &self.netns, errno)),
        }
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &'static str) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(|source| NetError::Socket {
            netns: self.netns.clone(),
            op,
            source,
        })?;
        Ok(self.seq)
    }

    /// Reads replies to `seq` until an ACK, an error or the DONE ending a dump.
    fn collect(&mut self, seq: u32, op: &'static str) -> Result<Reply> {
        let mut out = Vec::new();
        loop {
            let (buf, _) = self
                .sock
                .recv_from_full()
                .map_err(|source| NetError::Socket {
                    netns: self.netns.clone(),
                    op,
                    source,
                })?;
            let mut offset = 0;
            while offset < buf.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..])
                    .map_err(|e| self.decode_err(op, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(self.decode_err(op, "zero-length message".into()));
                }
                offset += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue; // a late answer to an earlier request
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(Reply::Done(out)),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(Reply::Done(out)),
                        Some(code) => return Ok(Reply::Errno(Errno::from_raw(-code.get()))),
                    },
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    _ => {}
                }
            }
        }
    }

    fn decode_err(&self, op: &'static str, detail: String) -> NetError {
        NetError::Decode {
            op,
            netns: self.netns.clone(),
            detail,
        }
    }
}

enum Reply {
    Done(Vec<RouteNetlinkMessage>),
    Errno(Errno),
}
