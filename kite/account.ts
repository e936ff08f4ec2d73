/**
 * The Kite account as a rate-budget peer. Kite limits requests per customer account, and the account is what the
 * client certificate authenticates: every client (every group's, every worker's) with the same API URL and
 * certificate shares one budget.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { peerId } from '../shared/limits';
import type { KiteClientOptions } from './client';

/** `kite:<digest of the API URL and the certificate's SHA-256 fingerprint (or the PFX bytes)>`. */
export function kiteAccountPeer(options: Pick<KiteClientOptions, 'baseUrl' | 'cert' | 'pfx'>): string {
  return peerId('kite', (options.baseUrl ?? '').replace(/\/+$/, ''), certificateIdentity(options));
}

function certificateIdentity({ cert, pfx }: Pick<KiteClientOptions, 'cert' | 'pfx'>): string {
  if (cert) {
    try {
      return new X509Certificate(cert).fingerprint256;
    } catch {
      return createHash('sha256').update(cert).digest('hex');
    }
  }
  return pfx ? createHash('sha256').update(pfx).digest('hex') : 'no-client-certificate';
}
