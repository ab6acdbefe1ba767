// The opcode table against IBA Vol 1 Table 38 (9.2.1) and the RoCEv2 CNP (Annex A17.9.2).
#include "wire/opcode.h"

#include <gtest/gtest.h>

namespace softrdma::wire {
namespace {

TEST(Opcode, WriteOnlyWithImmediate) {
  const OpcodeInfo& i = opcode_info(kRcWriteOnlyImm);
  EXPECT_EQ(i.name, "RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE");
  EXPECT_TRUE(i.has(kReth) && i.has(kImmDt) && i.has(kPayload));
  EXPECT_EQ(i.reth, 12);
  EXPECT_EQ(i.immdt, 28);
  EXPECT_EQ(i.payload, 32);
  EXPECT_TRUE(i.is(kRequest) && i.is(kWrite) && i.is(kOnly) && i.is(kWithImm));
}

TEST(Opcode, ReadResponses) {
  for (uint8_t op : {kRcReadRespFirst, kRcReadRespLast, kRcReadRespOnly}) {
    EXPECT_TRUE(opcode_info(op).has(kAeth)) << int(op);
    EXPECT_EQ(opcode_info(op).aeth, 12);
    EXPECT_EQ(opcode_info(op).payload, 16);
    EXPECT_TRUE(opcode_info(op).is(kResponse) && opcode_info(op).is(kReadResp));
  }
  const OpcodeInfo& mid = opcode_info(kRcReadRespMiddle);  // middle carries no AETH
  EXPECT_FALSE(mid.has(kAeth));
  EXPECT_EQ(mid.payload, 12);
  EXPECT_TRUE(mid.is(kMiddle));
  EXPECT_FALSE(opcode_info(kRcReadRespFirst).is(kLast));
  EXPECT_TRUE(opcode_info(kRcReadRespOnly).is(kOnly));

  const OpcodeInfo& req = opcode_info(kRcReadRequest);
  EXPECT_EQ(req.reth, 12);
  EXPECT_EQ(req.payload, 28);
  EXPECT_FALSE(req.has(kPayload));
}

TEST(Opcode, AtomicsAndAcks) {
  for (uint8_t op : {kRcCompSwap, kRcFetchAdd}) {
    EXPECT_EQ(opcode_info(op).atmeth, 12);
    EXPECT_EQ(opcode_info(op).payload, 40);
    EXPECT_FALSE(opcode_info(op).has(kPayload));
    EXPECT_TRUE(opcode_info(op).is(kAtomic));
  }
  EXPECT_TRUE(opcode_info(kRcCompSwap).is(kCompSwap));
  EXPECT_TRUE(opcode_info(kRcFetchAdd).is(kFetchAdd));
  EXPECT_EQ(opcode_info(kRcAck).aeth, 12);
  EXPECT_EQ(opcode_info(kRcAck).payload, 16);
  EXPECT_EQ(opcode_info(kRcAtomicAck).aeth, 12);
  EXPECT_EQ(opcode_info(kRcAtomicAck).atmack, 16);
  EXPECT_EQ(opcode_info(kRcAtomicAck).payload, 24);
  EXPECT_EQ(opcode_info(kRcSendOnlyInv).ieth, 12);
  EXPECT_EQ(opcode_info(kRcSendLastInv).payload, 16);
  EXPECT_TRUE(opcode_info(kRcSendOnlyInv).is(kWithInv));
}

TEST(Opcode, UnreliableDatagram) {
  EXPECT_EQ(opcode_info(kUdSendOnly).name, "UD_SEND_ONLY");
  EXPECT_EQ(opcode_info(kUdSendOnly).deth, 12);
  EXPECT_EQ(opcode_info(kUdSendOnly).payload, 20);
  EXPECT_EQ(opcode_info(kUdSendOnlyImm).deth, 12);
  EXPECT_EQ(opcode_info(kUdSendOnlyImm).immdt, 20);
  EXPECT_EQ(opcode_info(kUdSendOnlyImm).payload, 24);
  EXPECT_EQ(opcode_info(kUdSendOnly).transport, Transport::kUd);
  for (int op = 0x60; op < 0x80; ++op)
    EXPECT_EQ(opcode_info(uint8_t(op)).valid(), op == 0x64 || op == 0x65) << op;
}

TEST(Opcode, Cnp) {
  const OpcodeInfo& c = opcode_info(kCnpOpcode);
  EXPECT_EQ(c.name, "CNP");
  EXPECT_EQ(c.transport, Transport::kCnp);
  EXPECT_TRUE(c.is(kCnp));
  EXPECT_EQ(c.payload, 12);  // the 16 reserved bytes are payload
  EXPECT_FALSE(opcode_info(0x80).valid());
  EXPECT_FALSE(opcode_info(0x82).valid());
}

TEST(Opcode, InvalidOpcodes) {
  EXPECT_FALSE(opcode_info(0x15).valid());
  for (int op = 0x18; op < 0x20; ++op) EXPECT_FALSE(opcode_info(uint8_t(op)).valid()) << op;
  // UC has SEND and RDMA WRITE only: no READ, no ACK, no atomics (Table 38).
  for (int op = 0x2c; op < 0x40; ++op) EXPECT_FALSE(opcode_info(uint8_t(op)).valid()) << op;
  // RD is not implemented; 0xc0..0xff are manufacturer-specific.
  for (int op = 0x40; op < 0x60; ++op) EXPECT_FALSE(opcode_info(uint8_t(op)).valid()) << op;
  for (int op = 0xc0; op < 0x100; ++op) EXPECT_FALSE(opcode_info(uint8_t(op)).valid()) << op;
  EXPECT_EQ(opcode_info(0x15).transport, Transport::kNone);
}

TEST(Opcode, UcMirrorsRcSendAndWrite) {
  for (uint8_t rc = kRcSendFirst; rc <= kRcWriteOnlyImm; ++rc) {
    const OpcodeInfo& u = opcode_info(make_opcode(Transport::kUc, rc));
    const OpcodeInfo& r = opcode_info(rc);
    ASSERT_TRUE(u.valid()) << int(rc);
    EXPECT_EQ(u.transport, Transport::kUc);
    EXPECT_EQ(u.name.substr(0, 3), "UC_");
    EXPECT_EQ(u.name.substr(3), r.name.substr(3));
    EXPECT_EQ(u.hdrs, r.hdrs);
    EXPECT_EQ(u.payload, r.payload);
  }
  EXPECT_EQ(make_opcode(Transport::kUc, kRcWriteOnly), 0x2a);
}

TEST(Opcode, CountAndConsistency) {
  int valid = 0;
  for (int op = 0; op < 256; ++op) {
    const OpcodeInfo& i = opcode_info(uint8_t(op));
    if (!i.valid()) {
      EXPECT_EQ(i.hdrs, 0u);
      continue;
    }
    ++valid;
    EXPECT_NE(i.any(kRequest), i.any(kResponse) || i.is(kCnp)) << op;
    EXPECT_GE(i.payload, 12);
  }
  EXPECT_EQ(valid, 23 + 12 + 2 + 1);  // RC, UC, UD, CNP
}

}  // namespace
}  // namespace softrdma::wire
