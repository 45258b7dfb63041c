// The mock's 证书续期: what the CA says about each certificate is written in the fixture
// (`Fixture.renewal`), never worked out. The page lists the one medium's certificates
// with that state; several media plugged in block it with the service's error, as the
// service does.

import type { CertRef, RenewalCa, RenewalCert, RenewalEvent, RenewalPage } from "../bindings";
import type { CommandName } from "./index";
import type { Handler, MockBackend } from "./mock";
import { DAY, certKey } from "./fixture";

/** What the CA says about a certificate (by `certKey`), as the fixture states it. */
export type RenewalSpec = Pick<RenewalCert, "bound" | "renewal" | "kind" | "reason">;

export interface RenewalFixture {
  ca: RenewalCa;
  /** By `certKey`; a certificate without an entry is unbound with nothing applied for. */
  certificates: Record<string, RenewalSpec>;
  /** How many years an installed renewal adds to notAfter. */
  years: number;
  /** Decisions `renewalCheck` already told (`serial:state`), as the service remembers them. */
  told?: string[];
}

/** The embedded development CA on loopback, nothing bound or applied for. */
export function devCaRenewal(): RenewalFixture {
  return {
    ca: {
      name: "KeyBridge 开发 CA（测试）",
      url: "http://127.0.0.1:41234",
      development: true,
      embedded: true,
      loopback: true,
      operatorUrl: "http://127.0.0.1:41234/op?key=0a1b2c3d",
    },
    certificates: {},
    years: 1,
  };
}

function renewalOf(m: MockBackend): RenewalFixture {
  return (m.fixture.renewal ??= devCaRenewal());
}

/** The CA's state for a slot, as the fixture states it. */
export function renewalSpec(m: MockBackend, ref: CertRef): RenewalSpec {
  return (renewalOf(m).certificates[certKey(ref)] ??= { bound: false, renewal: "none", kind: null, reason: null });
}

/** The one medium, or the service's error for none / several. */
function singleMedium(m: MockBackend) {
  const media = m.fixture.media;
  if (media.length > 1) {
    throw m.error("multiple_media_present", { detail: `${media.length} keys are plugged in; renewal works on one key at a time — unplug the others` });
  }
  if (!media[0]) throw m.error("unknown_device", { detail: "no key is plugged in" });
  return media[0];
}

function page(m: MockBackend): RenewalPage {
  const r = renewalOf(m);
  const empty = { ca: r.ca, device: null, mediumLabel: null, mediumSerial: null, certificates: [], binding: null };
  let medium;
  try {
    medium = singleMedium(m);
  } catch (e) {
    const problem = (e as { toAppError(): RenewalPage["problem"] }).toAppError();
    return { ...empty, state: m.fixture.media.length > 1 ? "multipleMedia" : "noMedium", problem };
  }
  const certificates: RenewalCert[] = medium.certificates.map((c) => {
    const spec = renewalSpec(m, c.ref);
    return {
      ref: c.ref,
      serial: c.serial.toLowerCase(),
      subjectCn: c.subjectCn,
      notAfter: c.notAfter,
      daysLeft: c.daysLeft,
      status: c.status,
      ...spec,
      caError: null,
      canInstall: spec.renewal === "approved" || spec.renewal === "issued",
    };
  });
  return { ...empty, state: "ready", problem: null, device: medium.id, mediumLabel: medium.label, mediumSerial: medium.serial, certificates };
}

/**
 * The phone confirms binding `bindingId` (确认绑定): the medium's signing certificates
 * become bound at the "CA", and the window hears it as the service would tell it.
 */
export function confirmBinding(m: MockBackend, bindingId: string): void {
  const medium = singleMedium(m);
  const signing = medium.certificates.filter((c) => c.ref.usage === "sign");
  for (const c of signing) renewalSpec(m, c.ref).bound = true;
  m.emit("renewalEvent", { kind: "bound", bindingId, serials: signing.map((c) => c.serial.toLowerCase()), subjects: [] });
}

export const RENEWAL_ANSWERS: { [K in CommandName]?: Handler<K> } = {
  renewalPage: (m) => page(m),
  renewalBind: async (m) => {
    const medium = singleMedium(m);
    await m.unlock(medium.id, "renewal_bind");
    const id = m.nextId();
    return {
      bindingId: `b-${id}`,
      qrUrl: `${renewalOf(m).ca.url}/m/bind?token=mock-token-${id}`,
      expiresAtMs: Date.now() + 1800 * 1000,
      expiresIn: 1800,
    };
  },
  renewalInstall: async (m, ref) => {
    const medium = singleMedium(m);
    const cert = m.cert(ref);
    const spec = renewalSpec(m, ref);
    if (spec.renewal !== "approved" && spec.renewal !== "issued") {
      throw m.error("renewal_not_approved", { detail: `certificate ${cert.serial.toLowerCase()} cannot be installed yet` });
    }
    const auth = await m.unlock(medium.id, "renewal_install");
    const years = renewalOf(m).years;
    const oldSerial = cert.serial.toLowerCase();
    cert.serial = `${cert.serial.slice(0, -4)}${String(m.nextId()).padStart(4, "0")}`;
    cert.notAfter = new Date(Date.parse(cert.notAfter) + years * 365 * DAY).toISOString().replace(/\.\d{3}Z$/, "Z");
    cert.daysLeft += years * 365;
    cert.status = "valid";
    renewalOf(m).certificates[certKey(ref)] = { bound: spec.bound, renewal: "none", kind: null, reason: null };
    m.record(medium.id, "renewal_install", `CN=${cert.subjectCn}`, auth);
    m.emit("mediaChanged", { change: "changed", device: medium.id });
    return { kind: spec.kind ?? "renew", oldSerial, newSerial: cert.serial.toLowerCase(), newNotAfter: cert.notAfter, ref };
  },
  // Decisions not told yet, as the service tells them (events, returned too).
  renewalCheck: (m) => {
    const r = renewalOf(m);
    const told = (r.told ??= []);
    const out: RenewalEvent[] = [];
    for (const c of singleMedium(m).certificates) {
      const spec = renewalSpec(m, c.ref);
      if (spec.renewal !== "approved" && spec.renewal !== "rejected") continue;
      const key = `${c.serial}:${spec.renewal}`;
      if (told.includes(key)) continue;
      told.push(key);
      out.push({ kind: spec.renewal, bindingId: null, serials: [c.serial.toLowerCase()], subjects: [c.subjectCn] });
    }
    for (const e of out) m.emit("renewalEvent", e);
    return out;
  },
};
