/**
 * One thing wrong with an input, found by a validator that reports every
 * problem at once (so an operator fixes a form in one go, not one error per try).
 */
export type ProblemCode =
  | 'required'
  | 'too_long'
  | 'invalid_format'
  | 'not_integer'
  | 'out_of_range'
  | 'not_multiple'
  | 'exceeds_host'
  | 'not_mapped'
  | 'unknown_network'
  | 'invalid_address'
  | 'family_mismatch'
  | 'outside_subnet'
  | 'address_in_use'
  | 'duplicate'
  | 'has_snapshots';

export interface Problem {
  /** Path of the offending field, e.g. 'recoverySettings.nics[0].ip.gateway'. */
  field: string;
  code: ProblemCode;
  message: string;
}
