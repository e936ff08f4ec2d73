import type Redis from 'ioredis';

export const createSmokeActivities = (redis: Redis) => ({
  async recordVisit(key: string, value: string): Promise<string> {
    await redis.set(key, value, 'EX', 60);
    return (await redis.get(key)) ?? '';
  },
});
