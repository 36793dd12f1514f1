//! Temporary SHAKE/1 subset until the full views land.
pub const PAYLOAD_LEN: usize = 64;
pub const MAGIC: [u8; 2] = *b"SK";
pub const VERSION: u8 = 1;
pub const KIND_SHAKE: u8 = 0x01;
pub const KIND_RESULT: u8 = 0x81;
pub const FLAG_CONFIG_STALE: u8 = 0x01;

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Nothing = 0,
    Greeting = 1,
    RedPacket = 2,
    Throttled = 3,
    Closed = 4,
    Denied = 5,
    Redirect = 6,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Nothing,
        Outcome::Greeting,
        Outcome::RedPacket,
        Outcome::Throttled,
        Outcome::Closed,
        Outcome::Denied,
        Outcome::Redirect,
    ];
    pub fn name(self) -> &'static str {
        [
            "nothing",
            "greeting",
            "red_packet",
            "throttled",
            "closed",
            "denied",
            "redirect",
        ][self as usize]
    }
}

pub struct ShakeRequest<T: AsRef<[u8]>>(T);
impl<T: AsRef<[u8]>> ShakeRequest<T> {
    pub fn new_unchecked(b: T) -> Self {
        ShakeRequest(b)
    }
    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }
    pub fn magic(&self) -> [u8; 2] {
        [self.b()[0], self.b()[1]]
    }
    pub fn version(&self) -> u8 {
        self.b()[2]
    }
    pub fn kind(&self) -> u8 {
        self.b()[3]
    }
    pub fn shakes(&self) -> u16 {
        u16::from_be_bytes([self.b()[4], self.b()[5]])
    }
    pub fn user_id(&self) -> u64 {
        u64::from_be_bytes(self.b()[8..16].try_into().unwrap())
    }
    pub fn seq(&self) -> u32 {
        u32::from_be_bytes(self.b()[16..20].try_into().unwrap())
    }
    pub fn config_version(&self) -> u32 {
        u32::from_be_bytes(self.b()[20..24].try_into().unwrap())
    }
    pub fn client_ts(&self) -> u64 {
        u64::from_be_bytes(self.b()[24..32].try_into().unwrap())
    }
    pub fn token_expiry(&self) -> u32 {
        u32::from_be_bytes(self.b()[32..36].try_into().unwrap())
    }
    pub fn token(&self) -> u64 {
        u64::from_be_bytes(self.b()[40..48].try_into().unwrap())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShakeAnswerRepr {
    pub outcome: Outcome,
    pub flags: u8,
    pub resource_id: u16,
    pub user_id: u64,
    pub seq: u32,
    pub retry_after_ms: u32,
    pub client_ts: u64,
    pub packet_id: u64,
    pub amount_cents: u32,
    pub sponsor_id: u32,
    pub claim_mac: u64,
    pub config_version: u32,
    pub round_id: u32,
}

pub fn write_answer(buf: &mut [u8], a: &ShakeAnswerRepr) {
    buf[0..2].copy_from_slice(&MAGIC);
    buf[2] = VERSION;
    buf[3] = KIND_RESULT;
    buf[4] = a.outcome as u8;
    buf[5] = a.flags;
    buf[6..8].copy_from_slice(&a.resource_id.to_be_bytes());
    buf[8..16].copy_from_slice(&a.user_id.to_be_bytes());
    buf[16..20].copy_from_slice(&a.seq.to_be_bytes());
    buf[20..24].copy_from_slice(&a.retry_after_ms.to_be_bytes());
    buf[24..32].copy_from_slice(&a.client_ts.to_be_bytes());
    buf[32..40].copy_from_slice(&a.packet_id.to_be_bytes());
    buf[40..44].copy_from_slice(&a.amount_cents.to_be_bytes());
    buf[44..48].copy_from_slice(&a.sponsor_id.to_be_bytes());
    buf[48..56].copy_from_slice(&a.claim_mac.to_be_bytes());
    buf[56..60].copy_from_slice(&a.config_version.to_be_bytes());
    buf[60..64].copy_from_slice(&a.round_id.to_be_bytes());
}
