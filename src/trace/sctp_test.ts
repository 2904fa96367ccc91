import { deepEqual, equal, throws } from "node:assert/strict";
import { crc32c, firstChunkType, sctpInitPacket } from "./sctp.ts";

Deno.test("crc32c() matches the RFC 3720 test vectors", () => {
  equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
});

Deno.test("sctpInitPacket() writes ports, a zero verification tag and a valid checksum", () => {
  const packet = sctpInitPacket({
    sourcePort: 20001,
    destinationPort: 3868,
    initiateTag: 0xdeadbeef,
    initialTsn: 7,
  });
  const view = new DataView(packet.buffer);
  equal(packet.length, 32);
  deepEqual([view.getUint16(0), view.getUint16(2), view.getUint32(4)], [20001, 3868, 0]);
  equal(firstChunkType(packet), 1);
  equal(view.getUint16(14), 20); // chunk length
  equal(view.getUint32(16), 0xdeadbeef);
  // The receiver's check: CRC32c over the packet with the checksum field zeroed, stored LE.
  const stored = view.getUint32(8, true);
  const zeroed = packet.slice();
  new DataView(zeroed.buffer).setUint32(8, 0);
  equal(stored, crc32c(zeroed));
});

Deno.test("sctpInitPacket() refuses a zero initiate tag", () => {
  throws(
    () => sctpInitPacket({ sourcePort: 1, destinationPort: 2, initiateTag: 0, initialTsn: 0 }),
    RangeError,
  );
});
