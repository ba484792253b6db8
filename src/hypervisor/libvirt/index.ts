export { type DomainDefinition, domainXml, parseDomainXml } from './domain-xml.ts';
export { createLibvirtDriver, LibvirtDriver, type LibvirtDriverOptions } from './libvirt-driver.ts';
export { Virsh } from './virsh.ts';
