import type { ModelCard } from '../classifier/card.js';
import type { OutputWnids } from '../import/adapters.js';

/** What the studio's server tells the page (types only: shared by the server and the browser code). */

/** A model card as the browser gets it: everything it needs inline or as a URL. */
export interface BrowserCard extends Omit<ModelCard, 'labels' | 'baseDir'> {
  modelUrl: string;
  labels?: string[];
  wnids?: OutputWnids;
}

export interface BrowserDataset {
  id: string;
  title: string;
  labelSpace: 'imagenet' | 'own';
  items: { url: string; label?: number }[];
}

export interface StudioCatalog {
  models: BrowserCard[];
  datasets: BrowserDataset[];
  /** Whether the ImageNet assets folder is there (its path stays on the server). */
  assets: boolean;
}
