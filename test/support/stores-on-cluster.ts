/**
 * Imported first by a test file, puts every `testStore` of that file on the test Redis Cluster, so that the same
 * tests run again on a Cluster (e.g. test/state/store-cluster.test.ts imports this, then test/state/store.test.ts).
 */
import { putTestStoresOnCluster } from './test-store';

putTestStoresOnCluster();
