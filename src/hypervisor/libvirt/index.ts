export { type DomainDefinition, domainXml, parseDomainXml } from './domain-xml.ts';
export { createLibvirtDriver, LibvirtDriver, type LibvirtDriverOptions } from './libvirt-driver.ts';
export { LibvirtMirror } from './libvirt-mirror.ts';
export { Virsh } from './virsh.ts';
