/**
 * The publish policy's pure rule: which keys of a SIM's patch go out now. Counters wait for their interval, the
 * location for its distance; whatever is due takes the held keys along, and nothing is lost (the caller recomputes
 * the patch from what the target holds).
 */
import {
  applyPublishPolicy,
  DEFAULT_LOCATION_MIN_DISTANCE_M,
  diffRecords,
  distanceM,
  publishPolicyError,
  type PublishPolicy,
  type SimRecord,
} from '../../record';

const MADRID: SimRecord = {
  iccid: '89340711000000000001',
  imei: '863781010957232',
  Latitude: 40.4168,
  Longitude: -3.7038,
  dailyData: 100,
  dailySMS: 1,
};
/** Degrees of latitude per metre (a meridian degree is about 111.2 km). */
const LAT_PER_M = 1 / 111_195;
const T0 = 1_700_000_000_000;

function decide(next: SimRecord, policy?: PublishPolicy, countersSentAt: number | undefined = T0, now = T0 + 60_000) {
  const patch = diffRecords(MADRID, next)!;
  return applyPublishPolicy(MADRID, patch, policy, countersSentAt, now);
}

const moved = (metres: number, extra: Partial<SimRecord> = {}): SimRecord => ({
  ...MADRID,
  Latitude: Math.round((MADRID.Latitude! + metres * LAT_PER_M) * 1e6) / 1e6,
  ...extra,
});

test('distanceM is the great-circle distance', () => {
  expect(distanceM(40.4168, -3.7038, 40.4168, -3.7038)).toBe(0);
  expect(distanceM(0, 0, 1, 0)).toBeCloseTo(111_195, -1);
  // Madrid to Barcelona: about 505 km.
  expect(distanceM(40.4168, -3.7038, 41.3874, 2.1686) / 1000).toBeCloseTo(505, -1);
});

test('a small move is held, a move of at least the distance goes out; the default is 500 m', () => {
  expect(DEFAULT_LOCATION_MIN_DISTANCE_M).toBe(500);
  expect(decide(moved(200))).toEqual({ send: undefined, countersReleased: false });
  expect(decide(moved(600)).send).toEqual({ Latitude: moved(600).Latitude });
  expect(decide(moved(200), { locationMinDistanceM: 100 }).send).toEqual({ Latitude: moved(200).Latitude });
  expect(decide(moved(2_000), { locationMinDistanceM: 5_000 }).send).toBeUndefined();
});

test('0 sends every move', () => {
  expect(decide(moved(1), { locationMinDistanceM: 0 }).send).toEqual({ Latitude: moved(1).Latitude });
});

test('a held move rides along with any other change, and takes held counters along when it goes out', () => {
  expect(decide(moved(200, { imei: '356938035643809' })).send).toEqual({
    imei: '356938035643809',
    Latitude: moved(200).Latitude,
  });
  // Counters within their interval and a small move: both held.
  expect(decide(moved(200, { dailyData: 150 })).send).toBeUndefined();
  // Counters due (interval over): the small move goes with them.
  const due = decide(moved(200, { dailyData: 150 }), undefined, T0 - 3_600_000);
  expect(due).toEqual({ send: { Latitude: moved(200).Latitude, dailyData: 150 }, countersReleased: true });
  // A move due: counters within their interval go with it, and count as released.
  expect(decide(moved(800, { dailyData: 150 }))).toEqual({
    send: { Latitude: moved(800).Latitude, dailyData: 150 },
    countersReleased: true,
  });
});

test('a drift made of small steps goes out once it adds up to the distance from what the target holds', () => {
  // The caller diffs against what the target holds, so each step is measured from there, not from the last step.
  let held = true;
  let metres = 0;
  while (held) {
    metres += 150;
    held = decide(moved(metres)).send === undefined;
  }
  expect(metres).toBe(600);
});

test('a location that appears or disappears goes out at once', () => {
  const without: SimRecord = { ...MADRID };
  delete without.Latitude;
  delete without.Longitude;
  const appeared = applyPublishPolicy(without, { Latitude: 40.4, Longitude: -3.7 }, undefined, T0, T0);
  expect(appeared.send).toEqual({ Latitude: 40.4, Longitude: -3.7 });
  expect(decide(without).send).toEqual({ Latitude: null, Longitude: null });
});

test('a first publish sends everything', () => {
  const patch = diffRecords(undefined, moved(1))!;
  expect(applyPublishPolicy(undefined, patch, undefined, undefined, T0)).toEqual({
    send: patch,
    countersReleased: true,
  });
});

test('publishPolicyError says what is wrong with the distance', () => {
  expect(publishPolicyError({ locationMinDistanceM: 250 })).toBeUndefined();
  expect(publishPolicyError({ locationMinDistanceM: 0 })).toBeUndefined();
  expect(publishPolicyError({ locationMinDistanceM: -1 })).toMatch(
    /^locationMinDistanceM must be a distance in metres from 0 \(every move\) to 1000000, got -1$/
  );
  expect(publishPolicyError({ locationMinDistanceM: '500' as unknown as number })).toMatch(/got "500"/);
  expect(publishPolicyError({ locationMinDistanceM: Number.POSITIVE_INFINITY })).toMatch(/locationMinDistanceM/);
});
