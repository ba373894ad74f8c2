//! STUN (RFC 8489) and TURN (RFC 8656) wire format: a zero-copy reader over a received buffer,
//! a writer into a reusable `Vec<u8>`, MESSAGE-INTEGRITY, FINGERPRINT and ChannelData framing.
//!
//! The reader makes one pass over the attributes and keeps borrowed slices of the ones the relay
//! understands; it never allocates. Unknown comprehension-required attributes are collected so
//! the server can answer 420 with UNKNOWN-ATTRIBUTES.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ring::hmac;

use crate::Error;

/// The fixed value in every STUN header (RFC 8489 section 5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header.
pub const HEADER_LEN: usize = 20;
/// Size of the ChannelData header.
pub const CHANNEL_HEADER_LEN: usize = 4;
/// XOR constant of the FINGERPRINT attribute.
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// How many XOR-PEER-ADDRESS attributes one request may carry.
pub const MAX_PEERS: usize = 8;
/// How many unknown comprehension-required attributes are remembered for the 420 answer.
const MAX_UNKNOWN: usize = 8;

/// Attribute types the relay reads or writes.
pub mod attr {
    /// MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// CHANNEL-NUMBER.
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME.
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS.
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA.
    pub const DATA: u16 = 0x0013;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS.
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-ADDRESS-FAMILY.
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// EVEN-PORT.
    pub const EVEN_PORT: u16 = 0x0018;
    /// REQUESTED-TRANSPORT.
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// DONT-FRAGMENT.
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// MESSAGE-INTEGRITY-SHA256.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// USERHASH.
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RESERVATION-TOKEN.
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
}

/// STUN methods used by TURN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    /// Binding (RFC 8489).
    Binding,
    /// Allocate.
    Allocate,
    /// Refresh.
    Refresh,
    /// Send (indication only).
    Send,
    /// Data (indication only).
    Data,
    /// CreatePermission.
    CreatePermission,
    /// ChannelBind.
    ChannelBind,
    /// Any other method number.
    Other(u16),
}

impl Method {
    fn from_bits(bits: u16) -> Self {
        match bits {
            0x001 => Self::Binding,
            0x003 => Self::Allocate,
            0x004 => Self::Refresh,
            0x006 => Self::Send,
            0x007 => Self::Data,
            0x008 => Self::CreatePermission,
            0x009 => Self::ChannelBind,
            other => Self::Other(other),
        }
    }

    fn bits(self) -> u16 {
        match self {
            Self::Binding => 0x001,
            Self::Allocate => 0x003,
            Self::Refresh => 0x004,
            Self::Send => 0x006,
            Self::Data => 0x007,
            Self::CreatePermission => 0x008,
            Self::ChannelBind => 0x009,
            Self::Other(bits) => bits & 0x0FFF,
        }
    }
}

/// STUN message classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Request.
    Request,
    /// Indication.
    Indication,
    /// Success response.
    Success,
    /// Error response.
    Error,
}

/// A 96-bit STUN transaction id.
pub type TransactionId = [u8; 12];

fn message_type(method: Method, class: Class) -> u16 {
    let m = method.bits();
    let c: u16 = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

fn split_type(ty: u16) -> (Method, Class) {
    let method = (ty & 0x000F) | ((ty >> 1) & 0x0070) | ((ty >> 2) & 0x0F80);
    let class = match ((ty >> 4) & 1) | ((ty >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (Method::from_bits(method), class)
}

/// What the first bytes of a datagram or stream say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A STUN message (top two bits 00).
    Stun,
    /// A ChannelData message (top two bits 01).
    ChannelData,
    /// Anything else.
    Other,
}

/// Classifies a buffer by its first byte.
pub fn kind(buf: &[u8]) -> Kind {
    match buf.first().map(|b| b >> 6) {
        Some(0) => Kind::Stun,
        Some(1) => Kind::ChannelData,
        _ => Kind::Other,
    }
}

/// The length of the first complete frame in a TCP/TLS byte stream, or `None` when more bytes
/// are needed. ChannelData frames over streams are padded to a multiple of four.
pub fn stream_frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    let Some(&[b0, _, b2, b3]) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([b2, b3]));
    let total = match b0 >> 6 {
        0 => HEADER_LEN + len,
        1 => CHANNEL_HEADER_LEN + len.next_multiple_of(4),
        _ => {
            return Err(Error::Malformed(
                "stream frame is neither stun nor channel data",
            ));
        }
    };
    Ok((buf.len() >= total).then_some(total))
}

/// A parsed ChannelData message, borrowing its payload.
#[derive(Clone, Copy, Debug)]
pub struct ChannelData<'a> {
    /// Channel number, 0x4000..=0x7FFF.
    pub channel: u16,
    /// Application data.
    pub payload: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parses a ChannelData message; trailing padding is ignored.
    pub fn parse(buf: &'a [u8]) -> Result<Self, Error> {
        let Some((head, rest)) = buf.split_first_chunk::<4>() else {
            return Err(Error::Malformed("channel data shorter than its header"));
        };
        let channel = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if !(0x4000..=0x7FFF).contains(&channel) {
            return Err(Error::Malformed("channel number outside 0x4000..=0x7fff"));
        }
        let payload = rest
            .get(..len)
            .ok_or(Error::Malformed("channel data truncated"))?;
        Ok(Self { channel, payload })
    }
}

/// Writes a ChannelData header for `len` bytes of payload into `out`.
pub fn channel_header(channel: u16, len: u16) -> [u8; 4] {
    let c = channel.to_be_bytes();
    let l = len.to_be_bytes();
    [c[0], c[1], l[0], l[1]]
}

/// Known peer addresses of a request, in order, without allocating.
#[derive(Clone, Copy, Debug, Default)]
pub struct Peers {
    addrs: [Option<SocketAddr>; MAX_PEERS],
    len: usize,
}

impl Peers {
    fn push(&mut self, addr: SocketAddr) -> Result<(), Error> {
        let slot = self
            .addrs
            .get_mut(self.len)
            .ok_or(Error::Malformed("too many xor-peer-address attributes"))?;
        *slot = Some(addr);
        self.len += 1;
        Ok(())
    }

    /// The addresses, in message order.
    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addrs.iter().flatten().copied()
    }

    /// The first address.
    pub fn first(&self) -> Option<SocketAddr> {
        self.addrs.first().copied().flatten()
    }

    /// Whether the request carried none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Unknown comprehension-required attribute types of a message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unknown {
    types: [u16; MAX_UNKNOWN],
    len: usize,
}

impl Unknown {
    pub(crate) fn push(&mut self, ty: u16) {
        if let Some(slot) = self.types.get_mut(self.len) {
            *slot = ty;
            self.len += 1;
        }
    }

    /// The attribute types.
    pub fn as_slice(&self) -> &[u16] {
        self.types.get(..self.len).unwrap_or(&[])
    }
}

/// A STUN message borrowed from a receive buffer.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    raw: &'a [u8],
    /// Method.
    pub method: Method,
    /// Class.
    pub class: Class,
    /// Transaction id.
    pub transaction_id: TransactionId,
    /// USERNAME value.
    pub username: Option<&'a [u8]>,
    /// USERHASH was present (not supported by this relay).
    pub userhash: bool,
    /// REALM value.
    pub realm: Option<&'a [u8]>,
    /// NONCE value.
    pub nonce: Option<&'a [u8]>,
    /// Offset of the MESSAGE-INTEGRITY attribute header within the message.
    pub integrity: Option<usize>,
    /// MESSAGE-INTEGRITY-SHA256 was present.
    pub integrity_sha256: bool,
    /// FINGERPRINT was present and matched.
    pub fingerprint: bool,
    /// LIFETIME in seconds.
    pub lifetime: Option<u32>,
    /// REQUESTED-TRANSPORT protocol number.
    pub requested_transport: Option<u8>,
    /// REQUESTED-ADDRESS-FAMILY (1 = IPv4, 2 = IPv6).
    pub requested_family: Option<u8>,
    /// EVEN-PORT, with its R bit (reserve the next port too).
    pub even_port: Option<bool>,
    /// RESERVATION-TOKEN.
    pub reservation_token: Option<[u8; 8]>,
    /// DONT-FRAGMENT was present.
    pub dont_fragment: bool,
    /// CHANNEL-NUMBER.
    pub channel_number: Option<u16>,
    /// DATA.
    pub data: Option<&'a [u8]>,
    /// XOR-PEER-ADDRESS attributes.
    pub peers: Peers,
    /// XOR-MAPPED-ADDRESS (read by clients).
    pub xor_mapped: Option<SocketAddr>,
    /// XOR-RELAYED-ADDRESS (read by clients).
    pub xor_relayed: Option<SocketAddr>,
    /// ERROR-CODE number (read by clients).
    pub error_code: Option<u16>,
    /// Unknown comprehension-required attributes.
    pub unknown: Unknown,
}

impl<'a> Message<'a> {
    /// Parses one STUN message that fills `buf` exactly (as a datagram or a stream frame).
    pub fn parse(buf: &'a [u8]) -> Result<Self, Error> {
        let header: &[u8; HEADER_LEN] = buf
            .first_chunk()
            .ok_or(Error::Malformed("shorter than a stun header"))?;
        let ty = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if ty & 0xC000 != 0 || cookie != MAGIC_COOKIE {
            return Err(Error::Malformed("not a stun message"));
        }
        if len % 4 != 0 || HEADER_LEN + len != buf.len() {
            return Err(Error::Malformed("stun length does not match the datagram"));
        }
        let (method, class) = split_type(ty);
        let [.., t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11] = *header;
        let transaction_id = [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11];

        let mut msg = Self {
            raw: buf,
            method,
            class,
            transaction_id,
            username: None,
            userhash: false,
            realm: None,
            nonce: None,
            integrity: None,
            integrity_sha256: false,
            fingerprint: false,
            lifetime: None,
            requested_transport: None,
            requested_family: None,
            even_port: None,
            reservation_token: None,
            dont_fragment: false,
            channel_number: None,
            data: None,
            peers: Peers::default(),
            xor_mapped: None,
            xor_relayed: None,
            error_code: None,
            unknown: Unknown::default(),
        };
        msg.read_attributes()?;
        Ok(msg)
    }

    fn read_attributes(&mut self) -> Result<(), Error> {
        let buf = self.raw;
        let mut offset = HEADER_LEN;
        while offset < buf.len() {
            let Some(&[t0, t1, l0, l1]) = buf.get(offset..).and_then(|b| b.first_chunk::<4>())
            else {
                return Err(Error::Malformed("attribute header"));
            };
            let ty = u16::from_be_bytes([t0, t1]);
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            let value = buf
                .get(offset + 4..offset + 4 + len)
                .ok_or(Error::Malformed("attribute runs past the message"))?;
            let next = offset + 4 + len.next_multiple_of(4);
            if next > buf.len() {
                return Err(Error::Malformed("attribute padding runs past the message"));
            }

            if self.fingerprint {
                return Err(Error::Malformed("attribute after fingerprint"));
            }
            if ty == attr::FINGERPRINT {
                self.check_fingerprint(offset, value)?;
            } else if self.integrity.is_some() || self.integrity_sha256 {
                // RFC 8489 section 14.5: everything after the integrity attributes except
                // FINGERPRINT and MESSAGE-INTEGRITY-SHA256 is ignored.
                if ty == attr::MESSAGE_INTEGRITY_SHA256 {
                    self.integrity_sha256 = true;
                }
            } else {
                self.read_attribute(offset, ty, value)?;
            }
            offset = next;
        }
        Ok(())
    }

    fn read_attribute(&mut self, offset: usize, ty: u16, value: &'a [u8]) -> Result<(), Error> {
        match ty {
            attr::USERNAME => self.username = Some(bounded(value, 513)?),
            attr::USERHASH => self.userhash = true,
            attr::REALM => self.realm = Some(bounded(value, 763)?),
            attr::NONCE => self.nonce = Some(bounded(value, 763)?),
            attr::MESSAGE_INTEGRITY => {
                if value.len() != 20 {
                    return Err(Error::Malformed("message-integrity is not 20 bytes"));
                }
                self.integrity = Some(offset);
            }
            attr::MESSAGE_INTEGRITY_SHA256 => self.integrity_sha256 = true,
            attr::LIFETIME => self.lifetime = Some(be_u32(value)?),
            attr::REQUESTED_TRANSPORT => {
                self.requested_transport =
                    Some(*value.first().ok_or(Error::Malformed("transport"))?);
            }
            attr::REQUESTED_ADDRESS_FAMILY => {
                self.requested_family = Some(*value.first().ok_or(Error::Malformed("family"))?);
            }
            attr::EVEN_PORT => {
                let flags = value
                    .first()
                    .ok_or(Error::Malformed("even-port is empty"))?;
                self.even_port = Some(flags & 0x80 != 0);
            }
            attr::RESERVATION_TOKEN => {
                let token = value.first_chunk::<8>().filter(|_| value.len() == 8);
                let token = token.ok_or(Error::Malformed("reservation-token is not 8 bytes"))?;
                self.reservation_token = Some(*token);
            }
            attr::DONT_FRAGMENT => self.dont_fragment = true,
            attr::CHANNEL_NUMBER => {
                let v = be_u32(value)?;
                self.channel_number = Some((v >> 16) as u16);
            }
            attr::DATA => self.data = Some(value),
            attr::XOR_PEER_ADDRESS => {
                let addr = read_xor_address(value, &self.transaction_id)?;
                self.peers.push(addr)?;
            }
            attr::XOR_MAPPED_ADDRESS => {
                self.xor_mapped = Some(read_xor_address(value, &self.transaction_id)?);
            }
            attr::XOR_RELAYED_ADDRESS => {
                self.xor_relayed = Some(read_xor_address(value, &self.transaction_id)?);
            }
            attr::ERROR_CODE => {
                let v = be_u32(value)?;
                self.error_code = Some(((v >> 8) & 0x7) as u16 * 100 + (v & 0xFF) as u16);
            }
            _ if ty < 0x8000 => self.unknown.push(ty),
            _ => {}
        }
        Ok(())
    }

    fn check_fingerprint(&mut self, offset: usize, value: &[u8]) -> Result<(), Error> {
        let expected = be_u32(value)?;
        let covered = self
            .raw
            .get(..offset)
            .ok_or(Error::Malformed("fingerprint offset"))?;
        if fingerprint(covered, offset + 8) != expected {
            return Err(Error::Malformed("fingerprint does not match"));
        }
        self.fingerprint = true;
        Ok(())
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether MESSAGE-INTEGRITY is present and matches `key` (RFC 8489 section 14.5).
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some(offset) = self.integrity else {
            return false;
        };
        let (Some(covered), Some(tag)) = (
            self.raw.get(..offset),
            self.raw.get(offset + 4..offset + 24),
        ) else {
            return false;
        };
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let mut ctx = hmac::Context::with_key(&key);
        update_with_length(&mut ctx, covered, offset + 24);
        let computed = ctx.sign();
        constant_time_eq(computed.as_ref(), tag)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bounded(value: &[u8], max: usize) -> Result<&[u8], Error> {
    if value.len() > max {
        return Err(Error::Malformed("attribute longer than its maximum"));
    }
    Ok(value)
}

fn be_u32(value: &[u8]) -> Result<u32, Error> {
    let bytes: [u8; 4] = value
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::Malformed("attribute shorter than four bytes"))?;
    Ok(u32::from_be_bytes(bytes))
}

/// Feeds `covered` to `ctx` with the header length field replaced so that the message appears
/// to end at `end` (RFC 8489 sections 14.5 and 14.7).
fn update_with_length(ctx: &mut hmac::Context, covered: &[u8], end: usize) {
    let (header, rest) = patched_header(covered, end);
    ctx.update(&header);
    ctx.update(rest);
}

/// The first 20 bytes of `covered` with the length field set so the message ends at `end`, and
/// the bytes after them. Callers pass whole headers; a shorter input yields a zero header.
fn patched_header(covered: &[u8], end: usize) -> ([u8; HEADER_LEN], &[u8]) {
    let Some((head, rest)) = covered.split_first_chunk::<HEADER_LEN>() else {
        return ([0; HEADER_LEN], covered);
    };
    let mut header = *head;
    let len = (end.saturating_sub(HEADER_LEN) as u16).to_be_bytes();
    header[2] = len[0];
    header[3] = len[1];
    (header, rest)
}

/// CRC-32 of `covered` (with the length field set to end at `end`) XOR 0x5354554e.
fn fingerprint(covered: &[u8], end: usize) -> u32 {
    let (header, rest) = patched_header(covered, end);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header);
    hasher.update(rest);
    hasher.finalize() ^ FINGERPRINT_XOR
}

fn read_xor_address(value: &[u8], tid: &TransactionId) -> Result<SocketAddr, Error> {
    let family = value.get(1).copied();
    let Some(&[_, _, p0, p1]) = value.first_chunk::<4>() else {
        return Err(Error::Malformed("address too short"));
    };
    let port = u16::from_be_bytes([p0, p1]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let ip = match family {
        Some(0x01) => {
            let raw = value.get(4..8).filter(|_| value.len() == 8);
            let raw = raw.ok_or(Error::Malformed("ipv4 address length"))?;
            let mut octets = [0u8; 4];
            for ((o, r), m) in octets.iter_mut().zip(raw).zip(cookie) {
                *o = r ^ m;
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        Some(0x02) => {
            let raw = value.get(4..20).filter(|_| value.len() == 20);
            let raw = raw.ok_or(Error::Malformed("ipv6 address length"))?;
            let mut octets = [0u8; 16];
            let mask = cookie.iter().chain(tid.iter());
            for ((o, r), m) in octets.iter_mut().zip(raw).zip(mask) {
                *o = r ^ m;
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return Err(Error::Malformed("unknown address family")),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Size of an XOR address attribute value for `addr`.
pub fn xor_address_len(addr: &SocketAddr) -> usize {
    if addr.is_ipv4() { 8 } else { 20 }
}

/// Writes the value of an XOR address attribute into `out` (which must be
/// `xor_address_len(addr)` long).
pub fn write_xor_address(out: &mut [u8], addr: &SocketAddr, tid: &TransactionId) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = (addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes();
    let mut header = [0u8, 0, port[0], port[1]];
    match addr.ip() {
        IpAddr::V4(ip) => {
            header[1] = 0x01;
            let [a, b, c, d] = ip.octets();
            let value = [
                header[0],
                header[1],
                header[2],
                header[3],
                a ^ cookie[0],
                b ^ cookie[1],
                c ^ cookie[2],
                d ^ cookie[3],
            ];
            copy_into(out, &value);
        }
        IpAddr::V6(ip) => {
            header[1] = 0x02;
            let mask = cookie.iter().chain(tid.iter());
            let xored = ip.octets().into_iter().zip(mask).map(|(o, m)| o ^ m);
            for (o, v) in out.iter_mut().zip(header.into_iter().chain(xored)) {
                *o = v;
            }
        }
    }
}

fn copy_into(out: &mut [u8], value: &[u8]) {
    for (o, v) in out.iter_mut().zip(value) {
        *o = *v;
    }
}

/// A STUN header for a message whose attributes take `len` bytes.
pub fn header(method: Method, class: Class, len: u16, tid: &TransactionId) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    let fields = message_type(method, class)
        .to_be_bytes()
        .into_iter()
        .chain(len.to_be_bytes())
        .chain(MAGIC_COOKIE.to_be_bytes())
        .chain(tid.iter().copied());
    for (o, v) in out.iter_mut().zip(fields) {
        *o = v;
    }
    out
}

/// Builds a STUN message into a caller-owned buffer, keeping the header length current.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    tid: TransactionId,
}

impl<'b> Writer<'b> {
    /// Clears `buf` and writes a header.
    pub fn new(buf: &'b mut Vec<u8>, method: Method, class: Class, tid: TransactionId) -> Self {
        buf.clear();
        buf.extend_from_slice(&header(method, class, 0, &tid));
        Self { buf, tid }
    }

    fn set_length(&mut self) {
        let len = ((self.buf.len() - HEADER_LEN) as u16).to_be_bytes();
        if let Some(field) = self.buf.get_mut(2..4) {
            field.copy_from_slice(&len);
        }
    }

    /// Appends an attribute with a raw value (padded with zeros).
    pub fn attr(&mut self, ty: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&ty.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = value.len().next_multiple_of(4) - value.len();
        self.buf.resize(self.buf.len() + pad, 0);
        self.set_length();
        self
    }

    /// Appends a four-byte big-endian attribute.
    pub fn u32(&mut self, ty: u16, value: u32) -> &mut Self {
        self.attr(ty, &value.to_be_bytes())
    }

    /// Appends an XOR-encoded address attribute.
    pub fn xor_address(&mut self, ty: u16, addr: &SocketAddr) -> &mut Self {
        let mut value = [0u8; 20];
        let tid = self.tid;
        write_xor_address(&mut value, addr, &tid);
        let value = value.get(..xor_address_len(addr)).unwrap_or(&[]);
        self.attr(ty, value)
    }

    /// Appends ERROR-CODE.
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut value = Vec::with_capacity(4 + reason.len());
        value.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        value.extend_from_slice(reason.as_bytes());
        self.attr(attr::ERROR_CODE, &value)
    }

    /// Appends UNKNOWN-ATTRIBUTES.
    pub fn unknown_attributes(&mut self, types: &[u16]) -> &mut Self {
        let value: Vec<u8> = types.iter().flat_map(|t| t.to_be_bytes()).collect();
        self.attr(attr::UNKNOWN_ATTRIBUTES, &value)
    }

    /// Appends MESSAGE-INTEGRITY computed with `key`.
    pub fn integrity(&mut self, key: &[u8]) -> &mut Self {
        let end = self.buf.len() + 24;
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let mut ctx = hmac::Context::with_key(&key);
        update_with_length(&mut ctx, self.buf, end);
        let tag = ctx.sign();
        self.attr(attr::MESSAGE_INTEGRITY, tag.as_ref())
    }

    /// Appends FINGERPRINT.
    pub fn fingerprint(&mut self) -> &mut Self {
        let end = self.buf.len() + 8;
        let value = fingerprint(self.buf, end);
        self.u32(attr::FINGERPRINT, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 5769 section 2.1: sample request.
    const REQUEST: &str = "
        00010058 2112a442 b7e7a701 bc34d686 fa87dfae
        80220010 5354554e 20746573 7420636c 69656e74
        00240004 6e0001ff
        80290008 932ff9b1 51263b36
        00060009 6576746a 3a683676 59202020
        00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
        80280004 e57a3bcf";

    // RFC 5769 section 2.2: sample IPv4 response.
    const RESPONSE_V4: &str = "
        0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
        8022000b 74657374 20766563 746f7220
        00200008 0001a147 e112a643
        00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
        80280004 c07d4c96";

    // RFC 5769 section 2.3: sample IPv6 response.
    const RESPONSE_V6: &str = "
        01010048 2112a442 b7e7a701 bc34d686 fa87dfae
        8022000b 74657374 20766563 746f7220
        00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
        00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
        80280004 c8fb0b4c";

    // RFC 5769 section 2.4: request with long-term authentication.
    const REQUEST_LONG_TERM: &str = "
        00010060 2112a442 78ad3433 c6ad72c0 29da412e
        00060012 e3839ee3 8388e383 aae38383 e382afe3 82b90000
        0015001c 662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341
        0014000b 6578616d 706c652e 6f726700
        00080014 f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666";

    #[test]
    fn rfc5769_request_short_term_integrity_and_fingerprint() {
        let raw = hex(REQUEST);
        let msg = Message::parse(&raw).unwrap();
        assert_eq!(msg.method, Method::Binding);
        assert_eq!(msg.class, Class::Request);
        assert_eq!(msg.username, Some(&b"evtj:h6vY"[..]));
        assert!(msg.fingerprint);
        assert!(msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"));
        // PRIORITY (0x0024) and ICE-CONTROLLED (0x8029): comprehension-required unknown only.
        assert_eq!(msg.unknown.as_slice(), &[0x0024]);
    }

    #[test]
    fn rfc5769_responses_decode_mapped_address() {
        let raw = hex(RESPONSE_V4);
        let msg = Message::parse(&raw).unwrap();
        assert_eq!(msg.class, Class::Success);
        assert_eq!(msg.xor_mapped, Some("192.0.2.1:32853".parse().unwrap()));
        assert!(msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));

        let raw = hex(RESPONSE_V6);
        let msg = Message::parse(&raw).unwrap();
        let expected = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        assert_eq!(msg.xor_mapped, Some(expected));
        assert!(msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
    }

    #[test]
    fn rfc5769_long_term_credentials() {
        let raw = hex(REQUEST_LONG_TERM);
        let msg = Message::parse(&raw).unwrap();
        assert_eq!(
            msg.username,
            Some("\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}".as_bytes())
        );
        assert_eq!(msg.realm, Some(&b"example.org"[..]));
        assert_eq!(msg.nonce, Some(&b"f//499k954d6OL34oL9FSTvy64sA"[..]));
        // RFC 5769 gives the password after SASLprep as "TheMatrIX".
        let key = crate::proto::auth::long_term_key(
            "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}".as_bytes(),
            b"example.org",
            b"TheMatrIX",
        );
        assert!(msg.verify_integrity(&key));
    }

    #[test]
    fn rfc5769_responses_reencode_identically() {
        // Rebuild the IPv4 response with the writer and compare byte for byte.
        let raw = hex(RESPONSE_V4);
        let msg = Message::parse(&raw).unwrap();
        let mut out = Vec::new();
        Writer::new(
            &mut out,
            Method::Binding,
            Class::Success,
            msg.transaction_id,
        )
        .attr(attr::SOFTWARE, b"test vector")
        .xor_address(
            attr::XOR_MAPPED_ADDRESS,
            &"192.0.2.1:32853".parse().unwrap(),
        )
        .integrity(b"VOkJxbRl1RmTxUk/WvJxBt")
        .fingerprint();
        // The vector pads SOFTWARE with 0x20; the writer pads with zeros, so compare past it.
        assert_eq!(out.len(), raw.len());
        assert_eq!(out[..20], raw[..20]);
        assert_eq!(out[36..48], raw[36..48], "XOR-MAPPED-ADDRESS bytes");
        let reparsed = Message::parse(&out).unwrap();
        assert!(reparsed.fingerprint);
        assert!(reparsed.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));

        let raw = hex(RESPONSE_V6);
        let msg = Message::parse(&raw).unwrap();
        let addr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        let mut out = Vec::new();
        Writer::new(
            &mut out,
            Method::Binding,
            Class::Success,
            msg.transaction_id,
        )
        .attr(attr::SOFTWARE, b"test vector")
        .xor_address(attr::XOR_MAPPED_ADDRESS, &addr);
        assert_eq!(out[20 + 16..20 + 16 + 24], raw[20 + 16..20 + 16 + 24]);
    }

    #[test]
    fn tampered_fingerprint_is_rejected() {
        let mut raw = hex(REQUEST);
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(Message::parse(&raw).is_err());
    }

    #[test]
    fn type_bits_round_trip() {
        for method in [
            Method::Binding,
            Method::Allocate,
            Method::ChannelBind,
            Method::Other(0xABC),
        ] {
            for class in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                assert_eq!(split_type(message_type(method, class)), (method, class));
            }
        }
        assert_eq!(message_type(Method::Allocate, Class::Request), 0x0003);
        assert_eq!(message_type(Method::Allocate, Class::Success), 0x0103);
        assert_eq!(message_type(Method::Allocate, Class::Error), 0x0113);
        assert_eq!(message_type(Method::Data, Class::Indication), 0x0017);
    }

    #[test]
    fn truncated_and_oversized_inputs_are_errors_not_panics() {
        let raw = hex(REQUEST);
        for n in 0..raw.len() {
            assert!(Message::parse(&raw[..n]).is_err());
        }
        let mut bad = raw.clone();
        bad[3] = 0xFC; // length larger than the datagram
        assert!(Message::parse(&bad).is_err());
        assert!(ChannelData::parse(&[0x40, 0x00, 0x00, 0x05, 1, 2]).is_err());
        assert!(ChannelData::parse(&[0x80, 0x00, 0x00, 0x00]).is_err());
        let cd = ChannelData::parse(&[0x40, 0x01, 0x00, 0x02, 7, 8, 0, 0]).unwrap();
        assert_eq!((cd.channel, cd.payload), (0x4001, &[7u8, 8][..]));
    }

    #[test]
    fn stream_framing() {
        assert_eq!(stream_frame_len(&[0x40, 0x00, 0x00]).unwrap(), None);
        assert_eq!(
            stream_frame_len(&[0x40, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0]).unwrap(),
            None
        );
        assert_eq!(
            stream_frame_len(&[0x40, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            Some(12)
        );
        let raw = hex(REQUEST);
        assert_eq!(stream_frame_len(&raw).unwrap(), Some(raw.len()));
        assert!(stream_frame_len(&[0xC0, 0, 0, 0]).is_err());
    }
}
